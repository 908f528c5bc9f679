#!/usr/bin/env python3
"""The demo: fetch the development corpus, index it, then identify degraded clips.

    python scripts/demo.py            # library in ./demo-library, clips in ./data/demo-clips

Runs the real `tuneprint` commands and shows each one before it runs. Two songs are kept
out of the library so that the demo also shows an honest "not in the library".
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from tuneprint.encoder.audio import load_audio  # noqa: E402
from tuneprint.encoder.augment import mix_at_snr, phone, reverb  # noqa: E402
from tuneprint.encoder.splits import read_manifest  # noqa: E402

SR = 22050


def tuneprint(*args: str) -> None:
    exe = shutil.which("tuneprint") or str(Path(sys.executable).parent / "tuneprint")
    shown = [shlex.quote(a) for a in args]
    files = [a for a in args if a.endswith((".ogg", ".opus", ".wav"))]
    if len(files) > 6:  # a long file list is shown by its count
        shown = [a for a in shown if not a.endswith((".ogg", ".opus", ".wav"))] + [f"<{len(files)} files>"]
    print(f"\n$ tuneprint {' '.join(shown)}", flush=True)
    subprocess.run([exe, *args], check=False)


def encoder_changed(root: Path) -> bool:
    """Whether ``root`` is a library embedded with another encoder (or calibration) than the shipped one."""
    from tuneprint.errors import MismatchError
    from tuneprint.server.library import Library

    if not (root / "settings.json").is_file():
        return False
    try:
        Library.open(root).close()
    except MismatchError:
        return True
    return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--library", type=Path, default=Path("demo-library"))
    p.add_argument("--clips", type=Path, default=Path("data/demo-clips"))
    args = p.parse_args(argv)

    subprocess.run([sys.executable, str(HERE / "fetch_corpus.py"), "--out", str(args.corpus)], check=True)
    songs = read_manifest(args.corpus)
    rng = np.random.default_rng(2026)
    order = rng.permutation(len(songs))
    outsiders = [songs[i] for i in order[:2]]
    members = [s for s in songs if s not in outsiders]

    if encoder_changed(args.library):  # a demo library from an earlier tuneprint: bring it to this encoder
        tuneprint("reindex", "--library", str(args.library))
    tuneprint("add", "--library", str(args.library), "--labels", str(args.corpus / "labels.csv"),
              *[path for path, _ in members])
    tuneprint("stats", "--library", str(args.library))

    noises = sorted((args.corpus / "noise").iterdir())
    args.clips.mkdir(parents=True, exist_ok=True)
    clips = []
    picks = [songs[i] for i in order[2:5]]
    for (path, label), condition in zip(picks, ["noise", "phone", "reverb"]):
        clips.append(make_clip(path, condition, args.clips, rng, noises))
    clips += [make_clip(path, "noise", args.clips, rng, noises, prefix="not-added") for path, _ in outsiders]

    tuneprint("identify", "--library", str(args.library), *map(str, clips))
    tuneprint("genre", "--library", str(args.library), *map(str, clips[:3]))
    tuneprint("similar", "--library", str(args.library), "-n", "5", str(clips[0]))
    print(f"\nThe library is in {args.library}/ — try `tuneprint --help`.")
    return 0


def make_clip(path: str, condition: str, out: Path, rng, noises, prefix: str = "") -> Path:
    """A 3-s clip at a random moment, degraded as a phone in a room would hear it."""
    y = load_audio(path, sr=SR)
    start = rng.uniform(0, len(y) / SR - 3)
    clip = y[int(start * SR) : int(start * SR) + 3 * SR]
    noise = load_audio(noises[rng.integers(len(noises))], sr=SR)
    if condition == "noise":
        clip = mix_at_snr(clip, noise, 5.0)
    elif condition == "phone":
        clip = phone(mix_at_snr(clip, noise, 15.0), SR, rng)
    elif condition == "reverb":
        clip = reverb(clip, SR, rng, 0.6)
    name = f"{prefix or Path(path).stem}-{condition}-at-{start:.1f}s.wav"
    sf.write(out / name, clip, SR)
    return out / name


if __name__ == "__main__":
    sys.exit(main())
