"""`tuneprint` command line: a thin adapter over :class:`server.library.Library`.

Exit status: 0 all went well; 1 some inputs failed (reported on stderr, the rest answered);
2 bad usage; 3 the library could not be opened or changed.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path

from tuneprint.errors import AudioError, LibraryError, TuneprintError

log = logging.getLogger("tuneprint")

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_LIBRARY = 0, 1, 2, 3
# Modules that define `add_cli(command)`, where `command(name, help, run)` returns an
# argparse parser that already has --library and --verbose.
PLUGGED_COMMANDS = ("tuneprint.server.train", "tuneprint.server.evaluation", "tuneprint.server.app")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except TuneprintError as e:
        print(f"tuneprint: error: {e}", file=sys.stderr)
        return EXIT_PARTIAL if isinstance(e, AudioError) else EXIT_LIBRARY
    except KeyboardInterrupt:
        print("tuneprint: interrupted; the library keeps every batch that was committed before", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneprint", description="Audio fingerprinting and music similarity search.")
    parser.add_argument("--version", action="version", version=f"tuneprint {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, run) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--library", "-l", required=True, type=Path, help="library folder")
        p.add_argument("--verbose", "-v", action="store_true", default=None, help="log what happens")
        p.set_defaults(run=run)
        return p

    p = command("add", "Add audio files or folders (recursive) to a library, creating it on first use.", cmd_add)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="audio files or folders")
    p.add_argument("--index", choices=["faiss", "annoy"], default=None, help="index backend of a new library (default faiss)")
    p.add_argument("--model", default=None, help="encoder of a new library: 'default', 'seeded' or a checkpoint path")
    p.add_argument("--label", action="append", default=[], help="label attached to every track added (repeatable)")
    p.add_argument("--labels", type=Path, help="CSV with columns path,label giving per-file labels")
    p.add_argument("--json", action="store_true", help="one JSON object per file")

    p = command("identify", "Identify which song each clip comes from, and where in it — or say it is unknown.", cmd_identify)
    p.add_argument("clips", nargs="+", type=Path, metavar="CLIP")
    p.add_argument("--json", action="store_true", help="one JSON object per clip")

    p = command("similar", "List the tracks nearest to a clip or to a stored track.", cmd_similar)
    p.add_argument("clip", nargs="?", type=Path, metavar="CLIP")
    p.add_argument("--track", metavar="SONG_ID", help="a stored track instead of a clip")
    p.add_argument("-n", "--top", type=int, default=10, help="how many tracks (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object")

    p = command("genre", "Label each clip by the majority of its nearest neighbours' labels (top 2).", cmd_genre)
    p.add_argument("clips", nargs="+", type=Path, metavar="CLIP")
    p.add_argument("--json", action="store_true", help="one JSON object per clip")

    p = command("stats", "Counts: songs, snippets, hours, labels, backend.", cmd_stats)
    p.add_argument("--json", action="store_true")

    p = command("tracks", "List the library's tracks.", cmd_tracks)
    p.add_argument("--json", action="store_true", help="one JSON object per track")

    p = command("remove", "Remove songs from catalog and index.", cmd_remove)
    p.add_argument("song_ids", nargs="+", metavar="SONG_ID")

    p = command("reindex", "Re-embed every track with the library's encoder and rebuild the index.", cmd_reindex)

    # Commands that live beside their stage: each module adds its own sub-command.
    for module in PLUGGED_COMMANDS:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_cli(command)
    return parser


# -- commands ---------------------------------------------------------------------------
def cmd_add(args) -> int:
    from tuneprint.server.library import Library, LibrarySettings, find_audio_files
    from tuneprint.index.vectors import IndexConfig

    try:
        labels = _read_label_csv(args.labels) if args.labels else {}
    except OSError as e:
        print(f"tuneprint: error: cannot read the labels CSV {args.labels}: {e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    files = find_audio_files(args.paths)
    if not files:
        print("tuneprint: error: no audio files found in the given paths", file=sys.stderr)
        return EXIT_PARTIAL
    if (args.library / "settings.json").is_file():
        lib = Library.open(args.library)
        if args.index and args.index != lib.settings.index.backend:
            log.warning("library uses %s; --index %s applies only to new libraries", lib.settings.index.backend, args.index)
    else:
        settings = LibrarySettings(index=IndexConfig(backend=args.index or "faiss"), model=args.model or "default")
        lib = Library.create(args.library, settings)
    from tqdm import tqdm

    started, audio_seconds = time.perf_counter(), 0.0
    with lib, tqdm(total=len(files), unit="file", desc="adding", disable=None, file=sys.stderr) as bar:
        def progress(result, seconds):
            nonlocal audio_seconds
            audio_seconds += seconds
            bar.set_postfix(speed=f"{audio_seconds / max(time.perf_counter() - started, 1e-9):.0f}x realtime")
            bar.update(1)
            if args.json:
                print(json.dumps(result.__dict__), flush=True)
            if result.status == "failed":
                tqdm.write(f"tuneprint: error: {result.error}", file=sys.stderr)

        results = lib.add(files, labels=labels, default_labels=args.label, progress=progress)
        stats = lib.stats()
    counts = {s: sum(r.status == s for r in results) for s in ("added", "duplicate", "failed")}
    if not args.json:
        print(f"added {counts['added']}, already present {counts['duplicate']}, failed {counts['failed']}; "
              f"library now holds {stats['songs']} songs, {stats['hours']:.2f} h")
    return EXIT_PARTIAL if counts["failed"] else EXIT_OK


def cmd_identify(args) -> int:
    def answer(lib, clip):
        result = lib.identify(clip)
        if args.json:
            return json.dumps(result.to_dict())
        if result.match is None:
            guess = result.candidates[0] if result.candidates else None
            hint = f" (closest: {guess.song.title!r}, score {guess.vote.score:.2f})" if guess else ""
            return f"{clip}: not in the library{hint}"
        m = result.match
        heard = f", its music explains {m.vote.verified:.0%} of the clip" if m.vote.verified is not None else ""
        return (f"{clip}: {m.song.title!r} [{m.song.song_id}] at {_clock(m.vote.offset_s)}, score {m.vote.score:.2f}"
                f"{heard} — {m.song.path}")

    return _per_clip(args, args.clips, answer)


def cmd_genre(args) -> int:
    def answer(lib, clip):
        result = lib.label(clip)
        if args.json:
            return json.dumps(result.to_dict())
        votes = ", ".join(f"{label} {share:.0%}" for label, share in result.top) or "no labelled neighbours"
        return f"{clip}: {result.label or 'unknown'} ({votes})"

    return _per_clip(args, args.clips, answer)


def cmd_similar(args) -> int:
    from tuneprint.server.library import Library

    if (args.clip is None) == (args.track is None):
        print("tuneprint similar: error: give a CLIP or --track SONG_ID (one of them)", file=sys.stderr)
        return EXIT_USAGE
    with Library.open(args.library) as lib:
        query, neighbours = lib.similar(args.clip, track=args.track, n=args.top)
    if args.json:
        print(json.dumps({"query": query, "neighbours": [n.to_dict() for n in neighbours]}))
    else:
        print(f"nearest to {query}:")
        for i, n in enumerate(neighbours, 1):
            print(f"{i:3d}. {n.score:.3f}  {n.song.title} [{n.song.song_id}]  {', '.join(n.song.labels)}")
    return EXIT_OK


def cmd_stats(args) -> int:
    from tuneprint.server.library import Library

    with Library.open(args.library) as lib:
        stats = lib.stats()
    if args.json:
        print(json.dumps(stats))
    else:
        labels = ", ".join(f"{k} ({v})" for k, v in stats["labels"].items()) or "none"
        print(f"library  {stats['library']}\nsongs    {stats['songs']}\nsnippets {stats['snippets']}\n"
              f"hours    {stats['hours']:.2f}\nlabels   {labels}\nbackend  {stats['backend']}\n"
              f"index    {stats['index_bytes'] / 1e6:.1f} MB, catalog {stats['catalog_bytes'] / 1e6:.1f} MB\nencoder  {stats['model_id']}\n"
              f"unknown  below similarity {stats['min_similarity']:.3f} for 3-s clips, "
              f"{stats['min_similarity_long']:.3f} for long ones (at this library's size)"
              + (f"\nverify   top {stats['verify_top']} songs against their spectrograms; unknown below evidence "
                 f"{stats['min_evidence']:.3f} (similarity + {stats['verify_weight']:g} × share explained)"
                 if stats["verify_top"] else "\nverify   off (the encoder was not calibrated with it)"))
    return EXIT_OK


def cmd_tracks(args) -> int:
    from tuneprint.server.library import Library

    with Library.open(args.library) as lib:
        for song in lib.tracks():
            print(json.dumps(song.to_dict()) if args.json else
                  f"{song.song_id}  {_clock(song.duration_s):>8}  {song.title}  [{', '.join(song.labels)}]  {song.path}")
    return EXIT_OK


def cmd_remove(args) -> int:
    from tuneprint.server.library import Library

    status = EXIT_OK
    with Library.open(args.library) as lib:
        for song_id in args.song_ids:
            try:
                song = lib.remove(song_id)
                print(f"removed {song_id} ({song.title})")
            except LibraryError as e:
                print(f"tuneprint: error: {e}", file=sys.stderr)
                status = EXIT_PARTIAL
    return status


def cmd_reindex(args) -> int:
    from tqdm import tqdm
    from tuneprint.server.library import Library

    with Library.open(args.library, check_model=False) as lib:
        with tqdm(total=len(lib.tracks()), unit="song", desc="re-embedding", disable=None, file=sys.stderr) as bar:
            n = lib.reindex(progress=lambda song: bar.update(1))
    print(f"re-embedded {n} songs with encoder {lib.model_id}")
    return EXIT_OK


# -- helpers ----------------------------------------------------------------------------
def _per_clip(args, clips, answer) -> int:
    """Answer each clip; a bad clip is reported on stderr and the others are still answered."""
    from tuneprint.server.library import Library

    status = EXIT_OK
    with Library.open(args.library) as lib:
        for clip in clips:
            try:
                print(answer(lib, clip), flush=True)
            except AudioError as e:
                print(f"tuneprint: error: {e}", file=sys.stderr)
                status = EXIT_PARTIAL
    return status


def _read_label_csv(path: Path) -> dict[str, list[str]]:
    """path,label rows (a header row is optional); relative paths are relative to the CSV."""
    labels: dict[str, list[str]] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or row[0].strip().lower() == "path":
                continue
            file = Path(row[0].strip())
            file = file if file.is_absolute() else path.parent / file
            labels.setdefault(str(file.resolve()), []).append(row[1].strip())
    return labels


def _clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m)}:{s:04.1f}"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tuneprint")
    except PackageNotFoundError:
        return "dev"


if __name__ == "__main__":
    sys.exit(main())
