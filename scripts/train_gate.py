"""Train the music / non-music gate on the development corpus, measure it, ship it.

    python scripts/train_gate.py --corpus data/corpus --debs data/debs --cache /tmp/gate-cache

Writes encoder/weights/gate.safetensors (for the shipped encoder) and the "Music / non-music
gate" section of docs/BENCHMARKS.md. Reads the corpus with its style collections
(scripts/fetch_corpus.py) and the short sounds of their Debian packages, unpacked under
--debs/raw (kept there by fetching without --remove-debs). Needs espeak-ng for the speech clips.
The embedded clips are kept in --cache, so a second run only refits.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tuneprint.server.evaluation.gate_data import GateDataConfig, missing_speech_tool
from tuneprint.server.evaluation.gate_report import train_gate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--debs", type=Path, default=ROOT / "data" / "debs",
                   help="the package cache whose raw/ holds the unpacked packages (their short sounds)")
    p.add_argument("--model", default="default", help="the encoder whose embeddings the gate reads")
    p.add_argument("--out", type=Path, default=ROOT / "encoder" / "weights" / "gate.safetensors")
    p.add_argument("--benchmarks", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument("--no-benchmarks", action="store_true", help="do not write the BENCHMARKS.md section")
    p.add_argument("--cache", type=Path, default=None, help="folder for the embedded clips (reused when there)")
    p.add_argument("--seed", type=int, default=GateDataConfig.seed)
    p.add_argument("--no-whole-files", action="store_true", help="skip judging whole test songs and sound files")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    missing = missing_speech_tool()
    if missing:
        p.error(f"needs {missing}")
    raw = args.debs / "raw"
    if not (raw / ".extracted").is_dir():
        p.error(f"no unpacked packages in {raw}: fetch the corpus keeping its package cache (scripts/fetch_corpus.py)")
    train_gate(args.corpus, args.out, None if args.no_benchmarks else args.benchmarks, model_spec=args.model,
               cache=args.cache, cfg=GateDataConfig(seed=args.seed), whole_files=not args.no_whole_files, raw=raw)


if __name__ == "__main__":
    main()
