#!/usr/bin/env python3
"""Fetch the development corpus (../shared/DATA.md) from Debian's package archive.

Music: the soundtracks' .ogg/.opus files of 30 s or more, deduplicated by content, one
folder per collection (the collection is the style label). Noise: the same packages'
short sound effects and voices, plus a few non-music packages, for mixing into clips
(training views and benchmarks). Held-out noise: the sounds of three more packages that
training never uses, for benchmarks with noise the encoder never heard.

    python scripts/fetch_corpus.py --out data/corpus

writes ``music/<collection>/*.ogg``, ``noise/*.{ogg,wav}``, ``noise-heldout/*``, ``labels.csv`` (path,label)
and ``manifest.csv`` (path,label,seconds,sha256). Nothing is committed to the repository.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf

log = logging.getLogger("fetch_corpus")

# collection label → (Debian package, folders whose audio is music)
MUSIC = {
    "wesnoth": ("wesnoth-1.16-music", ["music"]),
    "hedgewars": ("hedgewars-data", ["Music"]),
    "supertuxkart": ("supertuxkart-data", ["music", "tracks"]),
    "extremetuxracer": ("extremetuxracer-data", ["music"]),
    "pushover": ("pushover-data", ["themes"]),
    "xmoto": ("xmoto-data", ["Musics"]),
    "frozenbubble": ("frozen-bubble-data", ["snd"]),
    "funnyboat": ("funnyboat", ["data"]),
}
NOISE_ONLY = ["boswars-data", "pingus-data"]
# Sounds that neither training nor calibration ever mixes in: benchmarks with noise the model never heard.
HELDOUT_NOISE = ["alienblaster-data", "solarwolf", "ri-li-data"]
NOISE_FOLDERS = {"sound", "sounds", "Sounds", "sfx", "snd", "voices", "units"}
MIN_MUSIC_SECONDS = 30.0
MAX_NOISE_SECONDS = 30.0
EXTENSIONS = {".ogg", ".opus", ".wav", ".flac"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/corpus"), help="corpus folder (default data/corpus)")
    parser.add_argument("--cache", type=Path, default=Path("data/debs"), help="where .deb files are kept")
    parser.add_argument("--collections", nargs="*", default=list(MUSIC), help="which collections (default all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if (args.out / "manifest.csv").is_file() and (args.out / "noise").is_dir():
        log.info("corpus already in %s", args.out)
        fetch_heldout_noise(args.out, args.cache)
        return 0
    raw = args.cache / "raw"
    packages = [MUSIC[c][0] for c in args.collections] + NOISE_ONLY
    for package in packages:
        extract(download(package, args.cache), raw)

    music_dir, noise_dir = args.out / "music", args.out / "noise"
    shutil.rmtree(args.out, ignore_errors=True)
    music_dir.mkdir(parents=True)
    noise_dir.mkdir(parents=True)
    seen: set[str] = set()
    rows = []
    for label in args.collections:
        package, folders = MUSIC[label]
        for f in package_root(raw, package):
            seconds = duration(f)
            in_music_folder = any(part in folders for part in f.relative_to(raw).parts)
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            if seconds >= MIN_MUSIC_SECONDS and in_music_folder:
                if digest in seen:
                    continue
                seen.add(digest)
                dest = music_dir / label / f.name
                dest.parent.mkdir(exist_ok=True)
                if dest.exists():
                    dest = dest.with_name(f"{f.parent.name}-{f.name}")
                shutil.copy2(f, dest)
                rows.append((str(dest.relative_to(args.out)), label, round(seconds, 2), digest))
            elif 0.2 <= seconds <= MAX_NOISE_SECONDS and any(p in NOISE_FOLDERS for p in f.relative_to(raw).parts):
                copy_noise(f, digest, noise_dir, seen)
    copy_package_sounds(raw, NOISE_ONLY, noise_dir, seen)

    with open(args.out / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "seconds", "sha256"])
        w.writerows(rows)
    with open(args.out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows((p, label) for p, label, _, _ in rows)
    hours = sum(r[2] for r in rows) / 3600
    log.info("corpus: %d tracks, %.2f h of music in %d collections; %d noise files",
             len(rows), hours, len({r[1] for r in rows}), len(list(noise_dir.iterdir())))
    fetch_heldout_noise(args.out, args.cache)
    return 0


def fetch_heldout_noise(out: Path, cache: Path) -> None:
    """``noise-heldout/``: short sounds of HELDOUT_NOISE packages that are not in ``noise/``."""
    heldout = out / "noise-heldout"
    if heldout.is_dir():
        return
    raw = cache / "raw"
    for package in HELDOUT_NOISE:
        extract(download(package, cache), raw)
    write_atomically(heldout, lambda d: copy_package_sounds(raw, HELDOUT_NOISE, d, seen=set(), exclude=out / "noise"))


def write_atomically(folder: Path, fill) -> None:
    """Fill a sibling ``.partial`` folder, then rename it: an interrupted run leaves no half set."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    log.info("%s: %d files", folder, len(list(folder.iterdir())))


def download(package: str, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    log.info("downloading %s", package)
    cmd = ["apt-get", "download", package]
    if subprocess.run(cmd, cwd=cache, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(cmd, cwd=cache, check=True)
    return sorted(cache.glob(f"{package}_*.deb"))[-1]


def extract(deb: Path, raw: Path) -> None:
    marker = raw / ".extracted" / deb.name
    if marker.exists():
        return
    raw.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg", "-x", str(deb), str(raw)], check=True)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(_listing(deb))


def _listing(deb: Path) -> str:
    return subprocess.run(["dpkg", "-c", str(deb)], capture_output=True, text=True, check=True).stdout


def package_root(raw: Path, package: str) -> list[Path]:
    """Files that belong to ``package`` (from its listing), so collections never mix."""
    listing = (raw / ".extracted").glob(f"{package}_*.deb")
    files = []
    for marker in listing:
        for line in marker.read_text().splitlines():
            name = line.split()[-1].lstrip(".")
            p = raw / name.lstrip("/")
            if p.is_file() and p.suffix.lower() in EXTENSIONS:
                files.append(p)
    return sorted(set(files))


def duration(path: Path) -> float:
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:
        return 0.0


def copy_package_sounds(raw: Path, packages: list[str], noise_dir: Path, seen: set[str],
                        exclude: Path | None = None) -> None:
    """Copy the short sounds (not music) of ``packages``, skipping any already in ``exclude``."""
    known = {f.stem for f in exclude.iterdir()} if exclude else set()  # noise files are named by 10 hash digits
    for package in packages:
        for f in package_root(raw, package):
            if not 0.2 <= duration(f) <= MAX_NOISE_SECONDS or "music" in f.relative_to(raw).parts:
                continue
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
            if digest[:10] not in known:
                copy_noise(f, digest, noise_dir, seen)


def copy_noise(f: Path, digest: str, noise_dir: Path, seen: set[str]) -> None:
    if digest in seen:
        return
    seen.add(digest)
    shutil.copy2(f, noise_dir / f"{digest[:10]}{f.suffix.lower()}")


if __name__ == "__main__":
    sys.exit(main())
