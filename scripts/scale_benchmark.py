"""Scale benchmark: the 30-song benchmark library plus distractor songs up to millions of vectors.

    python scripts/scale_benchmark.py --corpus data/corpus --cache runs/distractors \\
        [--sizes 100000 300000 1000000] [--out docs/BENCHMARKS.md] [--json runs/scale.json]

Distractors are shifted copies (0.82–1.18× speed) of every corpus song that is neither in the
library nor kept out of it, embedded once into --cache (server/evaluation/scale.py). Writes the
"Scale" section of docs/BENCHMARKS.md and docs/scale.png (hit and "unknown" rate, latency and the
time of each 25-song commit against library size).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from tuneprint.index.vectors import IndexConfig
from tuneprint.server.evaluation.benchmark import held_out_songs
from tuneprint.server.evaluation.markdown import shown_path, write_section
from tuneprint.server.evaluation.scale import ScaleConfig, run_scale
from tuneprint.server.library import Library, LibrarySettings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus")
    p.add_argument("--cache", type=Path, default=ROOT / "runs" / "distractors", help="embedded distractors (kept)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(ScaleConfig.sizes), help="stored vectors to measure at")
    p.add_argument("--library", type=Path, help="where to build the library (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="markdown file to write the Scale section into")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "scale.png")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--faiss-factory", default=IndexConfig.faiss_factory,
                   help="the library's codec, e.g. PCA128,IVF1024,PQ64 (an IVF codec is trained on the first --train-min vectors)")
    p.add_argument("--nprobe", type=int, default=IndexConfig.nprobe, help="inverted lists an IVF search visits")
    p.add_argument("--train-min", type=int, default=IndexConfig.train_min)
    p.add_argument("--section", default="scale", help="the BENCHMARKS.md section --out writes")
    p.add_argument("--copies", type=int, default=0,
                   help="after the cached distractors, this many rounds of synthetic copies of them (stand-ins past ≈1 M vectors)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = ScaleConfig(sizes=tuple(args.sizes), copies=args.copies)
    root = args.library or Path(tempfile.mkdtemp(prefix="tuneprint-scale-")) / "library"
    shutil.rmtree(root, ignore_errors=True)
    members, _, _ = held_out_songs(args.corpus, 0.33)
    index = IndexConfig(faiss_factory=args.faiss_factory, nprobe=args.nprobe, train_min=args.train_min)
    with Library.create(root, LibrarySettings(index=index)) as lib:
        started = time.perf_counter()
        lib.add([path for path, _ in members], labels={path: [label] for path, label in members}, allow_non_music=True)
        ingest_s = time.perf_counter() - started
        result = run_scale(lib, args.corpus, args.cache, cfg)
    if args.json:
        args.json.write_text(json.dumps({"ingest_s": ingest_s, **asdict(result)}, indent=2))
    plot(result, args.plot)
    text = f"Index codec `{index.faiss_factory}`" + (f", nprobe {index.nprobe}" if "IVF" in index.faiss_factory else "")
    text += ".\n\n" + summarize(result, cfg, args.plot)
    if args.out:
        title = "Scale: the benchmark library grown with distractor songs"  # one title a section: write_section finds a section by it too
        write_section(args.out, args.section, title if args.section == "scale" else f"{title} ({args.section})", text)
    print(text)
    if not args.library:
        shutil.rmtree(root.parent, ignore_errors=True)


def summarize(result, cfg: ScaleConfig, plot_path: Path) -> str:
    rows = ["| stored vectors | songs | noise | phone | wrong song (noise/phone) | outsiders \"unknown\" | p50 / p99 ms | RSS MB | index MB | catalog MB | commits s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    synthetic = any(pt.synthetic for pt in result.points)
    if synthetic:
        rows = [rows[0].replace("| songs |", "| of them synthetic | songs |"), rows[1] + " --- |"]
    for pt in result.points:
        share = f" {pt.synthetic:,} |" if synthetic else ""
        rows.append(f"| {pt.vectors:,} |{share} {pt.songs:,} | {100 * pt.hit.get('noise', 0):.1f} % | {100 * pt.hit.get('phone', 0):.1f} % | "
                    f"{100 * pt.wrong.get('noise', 0):.1f} / {100 * pt.wrong.get('phone', 0):.1f} % | {100 * pt.unknown:.1f} % | "
                    f"{pt.p50_ms:.0f} / {pt.p99_ms:.0f} | {pt.rss_mb:.0f} | {pt.index_mb:.1f} | {pt.catalog_mb:.1f} | {pt.build_s:.0f} |")
    commits = result.commits
    curve = ""
    if commits:
        first, last = commits[: max(1, len(commits) // 10)], commits[-max(1, len(commits) // 10):]
        per = lambda cs: sum(s for _, s, _ in cs) / sum(n for *_, n in cs) * 1e6  # noqa: E731
        curve = (f"\nA 25-song commit (index segment + catalog; embedding excluded) took {per(first):.0f} µs per vector "
                 f"added at the start (library of {first[0][0]:,} vectors) and {per(last):.0f} µs per vector at the end "
                 f"({last[-1][0]:,} vectors): see {shown_path(plot_path, ROOT)}.\n")
    return (f"Distractors: {result.distractor_audio_h:.1f} h of shifted copies of corpus songs outside the benchmark "
            f"(embedding them took {result.distractor_embed_s / 60:.0f} min in this run; cached). "
            f"{cfg.clips_per_song} clips of 3 s per song and condition, clip seed {cfg.seed}."
            + (f" Past them, {cfg.copies} rounds of synthetic copies (`server/evaluation/scale.blended_copy`: each "
               f"distractor blended patch by patch with another at weight {cfg.copy_mix}): stand-ins for more real "
               "songs, so the rows with synthetic vectors measure time, memory and disk, and the answers only "
               "against such stand-ins." if synthetic else "") + "\n\n"
            + "\n".join(rows) + "\n" + curve)


def plot(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    v = [pt.vectors for pt in result.points]
    a.plot(v, [100 * pt.hit.get("noise", 0) for pt in result.points], "o-", label="noise: right song")
    a.plot(v, [100 * pt.hit.get("phone", 0) for pt in result.points], "o-", label="phone: right song")
    a.plot(v, [100 * pt.unknown for pt in result.points], "o-", label="outsiders: unknown")
    a.set_xscale("symlog", linthresh=1e4)
    a.set_xlabel("stored vectors")
    a.set_ylabel("%")
    a.legend()
    a.set_title("3-s clips against library size")
    if result.commits:
        b.plot([c[0] for c in result.commits], [c[1] / c[2] * 1e6 for c in result.commits], ".", ms=3)
    b.set_xlabel("vectors in the library before the commit")
    b.set_ylabel("µs per vector added")
    b.set_title("time of each 25-song commit")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
