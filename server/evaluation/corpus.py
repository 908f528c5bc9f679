"""The development corpus: its collections, which of them training never sees, and fetching it.

Everything comes from Debian's package archive (``apt-get download`` into a cache folder,
unpacked under its ``raw/``):

- music: the soundtracks' .ogg/.opus files of 30 s or more, deduplicated by content, one
  folder per collection (the collection is the style label);
- noise: the same packages' short sound effects and voices, plus a few non-music packages,
  for mixing into clips (training views and benchmarks);
- held-out noise: the sounds of three more packages that training never uses, for
  benchmarks with noise the encoder never heard.

:func:`fetch_corpus` writes ``music/<collection>/*.ogg``, ``noise/*.{ogg,wav}``,
``noise-heldout/*``, ``labels.csv`` (path,label) and ``manifest.csv``
(path,label,seconds,sha256).
"""
from __future__ import annotations

import csv
import hashlib
import logging
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from tuneprint.encoder.splits import song_unit, split_songs

log = logging.getLogger(__name__)

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
# Collections that training never sees: their labels are "unseen".
UNSEEN_LABELS = ("extremetuxracer", "pushover", "xmoto", "frozenbubble", "funnyboat")
# Collections added for learning style (DATA.md, "More collections"): music only, never mixed
# into noise/, so the identification corpus and its benchmarks stay as they were.
STYLE_MUSIC = {
    "ufoai": ("ufoai-music", ["base"]),  # the .ogg files inside base/0music.pk3 (a zip archive)
    "hyperrogue": ("hyperrogue-music", ["music"]),
    "singularity": ("singularity-music", ["music"]),
    "drascula": ("drascula-music", ["audio"]),
    "fillets": ("fillets-ng-data", ["music"]),
    "freedink": ("freedink-data", ["Sound"]),
    "asc": ("asc-music", ["music"]),
    "powermanga": ("powermanga-data", ["handheld_console"]),
    "pathological": ("pathological", ["music"]),
    "noiz2sa": ("noiz2sa-data", ["sounds"]),
    "gunroar": ("gunroar-data", ["musics"]),
    "mu-cade": ("mu-cade-data", ["musics"]),
    "parsec47": ("parsec47-data", ["sounds"]),
    "torus-trooper": ("torus-trooper-data", ["musics"]),
    "titanion": ("titanion-data", ["musics"]),
    "tumiki-fighters": ("tumiki-fighters-data", ["sounds"]),
    "rrootage": ("rrootage-data", ["sounds"]),
    "a7xpg": ("a7xpg-data", ["sounds"]),
}
# Style is trained and judged by collection: training never sees a song of the val or unseen
# collections. Val collections choose between variants; unseen ones give the reported figures.
# Fixed from track counts alone, before any style model was measured; the identification
# corpus's unseen collections stay unseen here too.
STYLE_VAL_COLLECTIONS = ("singularity", "freedink", "powermanga", "pathological", "mu-cade", "a7xpg")
STYLE_UNSEEN_COLLECTIONS = UNSEEN_LABELS + ("hyperrogue", "fillets", "asc", "parsec47", "titanion", "rrootage")
NOISE_ONLY = ["boswars-data", "pingus-data"]
# Sounds that neither training nor calibration ever mixes in: benchmarks with noise the model never heard.
HELDOUT_NOISE = ["alienblaster-data", "solarwolf", "ri-li-data"]
NOISE_FOLDERS = {"sound", "sounds", "Sounds", "sfx", "snd", "voices", "units"}
MIN_MUSIC_SECONDS = 30.0
MAX_NOISE_SECONDS = 30.0
EXTENSIONS = {".ogg", ".opus", ".wav", ".flac", ".mp3"}
ARCHIVES = {".pk3"}  # zip archives of game data, unpacked next to themselves
PROGRESS_SECONDS = 15.0  # at most one progress line this often during a long step


# -- the corpus as the rest of the code reads it ---------------------------------------------
def read_manifest(corpus: str | Path) -> list[tuple[str, str]]:
    """(absolute path, label) of every song of the corpus written by :func:`fetch_corpus`."""
    corpus = Path(corpus)
    with open(corpus / "manifest.csv", newline="") as f:
        return [(str((corpus / r["path"]).resolve()), r["label"]) for r in csv.DictReader(f)]


def split_corpus(corpus: str | Path, **shares: float) -> dict[str, list[tuple[str, str]]]:
    """The corpus's songs split by song into train / val / test and unseen (the unseen collections).

    ``shares``: ``test_share`` and ``val_share`` of :func:`tuneprint.encoder.splits.split_songs`.
    """
    return split_songs(read_manifest(corpus), unseen_labels=UNSEEN_LABELS, **shares)


def read_style_manifest(corpus: str | Path) -> list[tuple[str, str]]:
    """(absolute path, collection) of every song for style: the corpus's and the style collections'."""
    corpus = Path(corpus)
    with open(corpus / "style-manifest.csv", newline="") as f:
        return [(str((corpus / r["path"]).resolve()), r["label"]) for r in csv.DictReader(f)]


def split_style_corpus(corpus: str | Path) -> dict[str, list[tuple[str, str]]]:
    """Songs for style, split by collection: ``train`` (songs of training collections that are not
    in the identification corpus's test split), ``seen_test`` (those test songs: seen collections,
    songs never trained on), ``val`` and ``unseen`` (whole collections never trained on)."""
    parts: dict[str, list[tuple[str, str]]] = {"train": [], "seen_test": [], "val": [], "unseen": []}
    identification_test = {p for p, _ in split_corpus(corpus)["test"]}
    for path, label in read_style_manifest(corpus):
        if label in STYLE_UNSEEN_COLLECTIONS:
            parts["unseen"].append((path, label))
        elif label in STYLE_VAL_COLLECTIONS:
            parts["val"].append((path, label))
        elif path in identification_test or (label in STYLE_MUSIC and song_unit(path) < 0.2):
            parts["seen_test"].append((path, label))
        else:
            parts["train"].append((path, label))
    return parts


def is_style_fetched(out: Path) -> bool:
    return (out / "style-manifest.csv").is_file()


def is_fetched(out: Path) -> bool:
    """Whether ``out`` holds a fetched corpus (music and noise)."""
    return (out / "manifest.csv").is_file() and (out / "noise").is_dir()


# -- fetching --------------------------------------------------------------------------------
def fetch_corpus(out: Path, cache: Path, collections: Iterable[str] = tuple(MUSIC)) -> None:
    """Write the corpus of ``collections`` into ``out``, downloading packages into ``cache``.

    A corpus already in ``out`` is kept as it is (only a missing ``noise-heldout/`` is added).
    """
    collections = list(collections)
    if is_fetched(out):
        log.info("corpus already in %s", out)
        fetch_heldout_noise(out, cache)
        return
    raw = cache / "raw"
    packages = [MUSIC[c][0] for c in collections] + NOISE_ONLY
    for i, package in enumerate(packages, 1):
        extract(download(package, cache, f"{i}/{len(packages)}"), raw)

    music_dir, noise_dir = out / "music", out / "noise"
    shutil.rmtree(out, ignore_errors=True)
    music_dir.mkdir(parents=True)
    noise_dir.mkdir(parents=True)
    seen: set[str] = set()
    rows = []
    for label in collections:
        rows += _copy_collection(raw, label, out, seen)
    copy_package_sounds(raw, NOISE_ONLY, noise_dir, seen)
    _write_tables(out, rows)
    hours = sum(r[2] for r in rows) / 3600
    log.info("corpus: %d tracks, %.2f h of music in %d collections; %d noise files",
             len(rows), hours, len({r[1] for r in rows}), len(list(noise_dir.iterdir())))
    fetch_heldout_noise(out, cache)


def fetch_style_collections(out: Path, cache: Path) -> None:
    """Add the STYLE_MUSIC collections to the corpus in ``out`` (music only) and write
    ``style-manifest.csv``: the corpus's songs and theirs. Kept as it is when already there."""
    if is_style_fetched(out):
        log.info("style collections already in %s", out)
        return
    raw = cache / "raw"
    packages = [package for package, _ in STYLE_MUSIC.values()]
    for i, package in enumerate(packages, 1):
        extract(download(package, cache, f"{i}/{len(packages)}"), raw)
    with open(out / "manifest.csv", newline="") as f:
        rows = [(r["path"], r["label"], float(r["seconds"]), r["sha256"]) for r in csv.DictReader(f)]
    seen = {r[3] for r in rows}
    for label, (package, folders) in STYLE_MUSIC.items():
        shutil.rmtree(out / "music" / label, ignore_errors=True)
        added = _copy_music(raw, package, folders, out / "music" / label, seen)
        rows += [(str(p.relative_to(out)), label, seconds, digest) for p, seconds, digest in added]
        log.info("%s: %d tracks, %.0f min", label, len(added), sum(a[1] for a in added) / 60)
    tmp = out / "style-manifest.csv.partial"
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "seconds", "sha256"])
        w.writerows(rows)
    tmp.rename(out / "style-manifest.csv")


def _copy_music(raw: Path, package: str, folders: list[str], dest_dir: Path,
                seen: set[str]) -> list[tuple[Path, float, str]]:
    """Copy the music of ``package`` (files of 30 s or more under ``folders``, new content only)."""
    copied = []
    for f in package_root(raw, package):
        if not any(part in folders for part in f.relative_to(raw).parts):
            continue
        seconds = duration(f)
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if seconds < MIN_MUSIC_SECONDS or digest in seen:
            continue
        seen.add(digest)
        dest_dir.mkdir(parents=True, exist_ok=True)
        dest = dest_dir / f.name
        if dest.exists():
            dest = dest.with_name(f"{f.parent.name}-{f.name}")
        shutil.copy2(f, dest)
        copied.append((dest, round(seconds, 2), digest))
    return copied


def _copy_collection(raw: Path, label: str, out: Path, seen: set[str]) -> list[tuple[str, str, float, str]]:
    """Copy one collection's music into ``out/music/<label>/`` and its short sounds into ``out/noise/``.

    Returns the manifest rows (path, label, seconds, sha256) of the music copied; ``seen``
    (content hashes) gains every file copied, so no file is copied twice.
    """
    package, folders = MUSIC[label]
    music_dir, noise_dir = out / "music", out / "noise"
    rows = []
    files = package_root(raw, package)
    ticker = Ticker(f"{label}: files scanned", len(files))
    for f in files:
        ticker.step()
        seconds = duration(f)
        parts = f.relative_to(raw).parts
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        if seconds >= MIN_MUSIC_SECONDS and any(part in folders for part in parts):
            if digest in seen:
                continue
            seen.add(digest)
            dest = music_dir / label / f.name
            dest.parent.mkdir(exist_ok=True)
            if dest.exists():
                dest = dest.with_name(f"{f.parent.name}-{f.name}")
            shutil.copy2(f, dest)
            rows.append((str(dest.relative_to(out)), label, round(seconds, 2), digest))
        elif 0.2 <= seconds <= MAX_NOISE_SECONDS and any(p in NOISE_FOLDERS for p in parts):
            copy_noise(f, digest, noise_dir, seen)
    return rows


def _write_tables(out: Path, rows: list[tuple[str, str, float, str]]) -> None:
    """``manifest.csv`` (path,label,seconds,sha256) and ``labels.csv`` (path,label)."""
    with open(out / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "seconds", "sha256"])
        w.writerows(rows)
    with open(out / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows((p, label) for p, label, _, _ in rows)


def fetch_heldout_noise(out: Path, cache: Path) -> None:
    """``noise-heldout/``: short sounds of HELDOUT_NOISE packages that are not in ``noise/``."""
    heldout = out / "noise-heldout"
    if heldout.is_dir():
        return
    raw = cache / "raw"
    for i, package in enumerate(HELDOUT_NOISE, 1):
        extract(download(package, cache, f"{i}/{len(HELDOUT_NOISE)}"), raw)
    write_atomically(heldout, lambda d: copy_package_sounds(raw, HELDOUT_NOISE, d, seen=set(), exclude=out / "noise"))


def write_atomically(folder: Path, fill: Callable[[Path], None]) -> None:
    """Fill a sibling ``.partial`` folder, then rename it: an interrupted run leaves no half set."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fill(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    log.info("%s: %d files", folder, len(list(folder.iterdir())))


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
    """Copy ``f`` as ``<10 hash digits><ext>`` unless its content was copied before."""
    if digest in seen:
        return
    seen.add(digest)
    shutil.copy2(f, noise_dir / f"{digest[:10]}{f.suffix.lower()}")


def duration(path: Path) -> float:
    """Length of an audio file in seconds from its header; 0 when it cannot be read."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:
        return 0.0


# -- Debian packages -------------------------------------------------------------------------
def download(package: str, cache: Path, which: str = "") -> Path:
    """The ``.deb`` of ``package`` in ``cache``, downloaded with ``apt-get download`` if missing.

    ``which`` (e.g. "3/10") is shown in the progress lines.
    """
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    size = package_sizes([package]).get(package)
    log.info("downloading %s%s%s", package, f" ({which})" if which else "",
             f", {size.download / 1e6:.0f} MB" if size else "")
    cmd = ["apt-get", "download", package]
    if _run_logged(cmd, cache, f"downloading {package}") != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(cmd, cwd=cache, check=True)
    return sorted(cache.glob(f"{package}_*.deb"))[-1]


def _run_logged(cmd: list[str], cwd: Path, what: str) -> int:
    """Run ``cmd`` quietly, logging a line every PROGRESS_SECONDS while it runs; its exit status."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            return proc.wait(timeout=PROGRESS_SECONDS)
        except subprocess.TimeoutExpired:
            log.info("%s: %.0f s so far", what, time.monotonic() - started)


def extract(deb: Path, raw: Path) -> None:
    """Unpack ``deb`` under ``raw`` once; its file listing is kept as the marker of having done so."""
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
    """Audio files that belong to ``package`` (from its listing), so collections never mix."""
    listing = (raw / ".extracted").glob(f"{package}_*.deb")
    files = []
    for marker in listing:
        for line in marker.read_text().splitlines():
            name = line.split()[-1].lstrip(".")
            p = raw / name.lstrip("/")
            if p.is_file() and p.suffix.lower() in EXTENSIONS:
                files.append(p)
            elif p.is_file() and p.suffix.lower() in ARCHIVES:
                files += _unpack_archive(p)
    return sorted(set(files))


def _unpack_archive(archive: Path) -> list[Path]:
    """The audio files inside a zip-format game archive, unpacked once into ``<archive>.d/``."""
    target = archive.with_name(archive.name + ".d")
    if not target.is_dir():
        tmp = archive.with_name(archive.name + ".d.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        with zipfile.ZipFile(archive) as z:
            for member in z.infolist():
                name = Path(member.filename)
                if name.suffix.lower() in EXTENSIONS and ".." not in name.parts and not name.is_absolute():
                    z.extract(member, tmp)
        tmp.rename(target)
    return [p for p in target.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS]


@dataclass(frozen=True)
class PackageSize:
    """What a package costs on disk: the ``.deb`` downloaded and its files once unpacked, in bytes."""

    download: int
    unpacked: int


def package_sizes(packages: list[str]) -> dict[str, PackageSize]:
    """Sizes from the local apt lists (``apt-cache show``); packages apt does not know are left out."""
    if not packages:
        return {}
    try:
        text = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages],
                              capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    sizes = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line[0].isspace())
        try:  # Installed-Size is in KiB
            sizes[fields["Package"]] = PackageSize(int(fields["Size"]), int(fields["Installed-Size"]) * 1024)
        except (KeyError, ValueError):
            continue
    return sizes


def packages_to_download(out: Path, cache: Path, collections: Iterable[str] = tuple(MUSIC)) -> list[str]:
    """The packages :func:`fetch_corpus` would download now (neither its result nor the ``.deb`` is there)."""
    wanted = [] if is_fetched(out) else [MUSIC[c][0] for c in collections] + NOISE_ONLY
    if not (out / "noise-heldout").is_dir():
        wanted += HELDOUT_NOISE
    return [p for p in wanted if not any(cache.glob(f"{p}_*.deb"))]


# -- the cache -------------------------------------------------------------------------------
def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 when it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def remove_cache(cache: Path) -> int:
    """Delete the package cache (the ``.deb`` files and ``raw/``); the bytes freed."""
    freed = folder_bytes(cache)
    shutil.rmtree(cache, ignore_errors=True)
    return freed


class Ticker:
    """Counts the steps of a long loop and logs ``what: done/total`` every PROGRESS_SECONDS."""

    def __init__(self, what: str, total: int, seconds: float | None = None) -> None:
        self.what, self.total = what, total
        self.seconds = PROGRESS_SECONDS if seconds is None else seconds
        self.done = 0
        self.last = time.monotonic()

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            log.info("%s: %d/%d", self.what, self.done, self.total)
