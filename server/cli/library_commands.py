"""add, remove, reindex, stats, tracks, doctor: build a library, look into it, keep it whole.

``stats`` and ``tracks`` open the library without its encoder (no torch, no index), so they
answer at once.
"""
from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

from tuneprint.errors import LibraryError

from .common import EXIT_LIBRARY, EXIT_OK, EXIT_PARTIAL, UsageError, add_command, clock, print_error
from .progress import Progress

log = logging.getLogger("tuneprint")


def add_parser_add(sub) -> None:
    p = add_command(sub, "add", "Add audio files or folders (recursive) to a library, creating it on first use.", cmd_add)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="audio files or folders")
    p.add_argument("--index", choices=["faiss", "annoy", "milvus"], default=None,
                   help="index backend of a new library (default faiss; milvus with --uri)")
    p.add_argument("--uri", default="", metavar="URI",
                   help="Milvus server of a new library's milvus index, e.g. http://host:19530; "
                        "without it, a Milvus Lite file in the library folder")
    p.add_argument("--model", default=None, help="encoder of a new library: 'default', 'seeded' or a checkpoint path")
    p.add_argument("--label", action="append", default=[], help="label attached to every track added (repeatable)")
    p.add_argument("--tag", action="append", default=[], help="tag attached to every track added (repeatable)")
    p.add_argument("--labels", type=Path, help="CSV with columns path,label giving per-file labels, and optionally "
                                               "tags (several separated by ';')")
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="files decoded and embedded at once, each in its own process (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="decode and embed on Ray instead: 'auto' (the cluster this node joined), 'ray://HOST:10001', "
                        "or 'local' (start Ray here); every node must see the audio at the same paths (docs/CLUSTER.md)")
    p.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="encoder copies on the Ray cluster (default: one per CPU it has)")
    p.add_argument("--commit-every", type=int, default=None, metavar="N",
                   help="files written all-or-nothing at a time (default: the library's setting, 25)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for another process writing to the library (default 60)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file, printed once its batch is safely written")
    p.add_argument("--allow-non-music", action="store_true",
                   help="keep files the music gate calls non-music (by default they are refused)")
    p.add_argument("--no-landmarks", action="store_true",
                   help="a new library keeps no landmarks (peak pairs that find 1-s and phoned clips the embeddings "
                        "miss; ≈56 kB on disk and 250 kB of memory a minute of audio): for libraries of many thousands of songs")


def add_catalog_parsers(sub) -> None:
    """stats, tracks, remove, reindex."""
    p = add_command(sub, "stats", "Counts: songs, snippets, hours, labels, backend.", cmd_stats)
    p.add_argument("--json", action="store_true")

    p = add_command(sub, "tracks", "List the library's tracks.", cmd_tracks)
    p.add_argument("--json", action="store_true", help="one JSON object per track")

    p = add_command(sub, "remove", "Remove songs from catalog and index.", cmd_remove)
    p.add_argument("song_ids", nargs="+", metavar="SONG_ID")

    p = add_command(sub, "reindex", "Re-embed every track with the library's encoder and rebuild the index.", cmd_reindex)
    p.add_argument("--faiss-factory", metavar="FACTORY", default=None,
                   help="store the vectors with this FAISS codec from now on, e.g. PCA128,PQ64 (64-byte codes, "
                        "the default of new libraries) for a library made before it, or Flat (exact)")

    p = add_command(sub, "doctor", "Check every part of a library and say what is wrong; --repair fixes what can "
                    "be rebuilt (settings, index, orphaned rows).", cmd_doctor)
    p.add_argument("--repair", action="store_true", help="repair what can be repaired")
    p.add_argument("--json", action="store_true", help="one JSON object per finding")


# -- add --------------------------------------------------------------------------------------
def cmd_add(args) -> int:
    from tuneprint.index.vectors import IndexConfig
    from tuneprint.server.distributed import RayIngest, require_ray
    from tuneprint.server.library import Library, LibrarySettings, find_audio_files

    if args.ray:
        require_ray()  # before a new library is created for nothing
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.ray and (args.jobs > 1 or (args.ray_actors is not None and args.ray_actors < 1)):
        raise UsageError("--ray takes --ray-actors (at least 1), not --jobs")
    try:
        labels, tags = read_label_csv(args.labels) if args.labels else ({}, {})
    except OSError as e:
        raise UsageError(f"cannot read the labels CSV {args.labels}: {e.strerror or e}") from e
    if args.commit_every is not None and args.commit_every < 1:
        raise UsageError("--commit-every must be at least 1")
    files = find_audio_files(args.paths)
    missing = [f for f in files if not f.is_file()]
    for f in missing:
        print_error(f"{f}: no such file")
    files = [f for f in files if f.is_file()]
    if not files:
        if not missing:
            print_error("no audio files found in the given paths")
        return EXIT_PARTIAL  # and no library is created for nothing
    if (args.library / "settings.json").is_file():
        lib = Library.open(args.library)
        if args.index and args.index != lib.settings.index.backend:
            log.warning("library uses %s; --index %s applies only to new libraries", lib.settings.index.backend, args.index)
    else:
        backend = args.index or ("milvus" if args.uri else "faiss")
        if args.uri and backend != "milvus":
            raise UsageError(f"--uri is for the milvus index, not {backend}")
        settings = LibrarySettings(index=IndexConfig(backend=backend, uri=args.uri), model=args.model or "default",
                                   landmarks=not args.no_landmarks)
        lib = Library.create(args.library, settings)

    lib.write_wait_s = args.wait
    with lib, Progress(len(files), desc="adding", unit="file") as bar:
        def progress(result, seconds: float) -> None:
            bar.update(audio_s=seconds)

        def committed(batch) -> None:  # reported only once written: a crash later loses none of these
            for result in batch:
                if args.json:
                    bar.print(json.dumps(result.__dict__))
                if result.status == "failed":
                    bar.print(f"tuneprint: error: {result.error}", file=sys.stderr)

        results = lib.add(files, labels=labels, default_labels=args.label, tags=tags, default_tags=args.tag,
                          progress=progress, on_commit=committed,
                          jobs=args.jobs, commit_every=args.commit_every, allow_non_music=args.allow_non_music,
                          ray=RayIngest(args.ray, args.ray_actors) if args.ray else None)
        stats = lib.stats()
    counts = {s: sum(r.status == s for r in results) for s in ("added", "duplicate", "failed")}
    counts["failed"] += len(missing)
    if not args.json:
        print(f"added {counts['added']}, already present {counts['duplicate']}, failed {counts['failed']}; "
              f"library now holds {stats['songs']} songs, {stats['hours']:.2f} h")
    return EXIT_PARTIAL if counts["failed"] else EXIT_OK


def read_label_csv(path: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per-file labels and tags: rows path,label[,tags] with tags separated by ";". A header row
    (first cell "path") may name the columns instead: path plus label and/or tags, in any order.
    Relative paths are relative to the CSV."""
    labels: dict[str, list[str]] = {}
    tags: dict[str, list[str]] = {}
    columns = {"label": 1, "tags": 2}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            cells = [c.strip() for c in row]
            if cells and cells[0].lower() == "path":
                named = {c.lower(): i for i, c in enumerate(cells)}
                columns = {k: named.get(k) for k in ("label", "tags")}
                continue
            if not cells or not cells[0]:
                continue
            file = Path(cells[0])
            file = str((file if file.is_absolute() else path.parent / file).resolve())
            label = _cell(cells, columns["label"])
            if label:
                labels.setdefault(file, []).append(label)
            tags.setdefault(file, []).extend(t.strip() for t in _cell(cells, columns["tags"]).split(";") if t.strip())
    return labels, {k: v for k, v in tags.items() if v}


def _cell(cells: list[str], i: int | None) -> str:
    return cells[i] if i is not None and i < len(cells) else ""


# -- looking in -------------------------------------------------------------------------------
def cmd_stats(args) -> int:
    from tuneprint.server.library import Library

    with Library.open(args.library, load_encoder=False) as lib:
        stats = lib.stats()
    if args.json:
        print(json.dumps(stats))
        return EXIT_OK
    labels = ", ".join(f"{k} ({v})" for k, v in stats["labels"].items()) or "none"
    tags = ", ".join(f"{k} ({v})" for k, v in stats["tags"].items()) or "none"
    lines = [f"library  {stats['library']}", f"songs    {stats['songs']}", f"snippets {stats['snippets']}",
             f"hours    {stats['hours']:.2f}", f"labels   {labels}", f"tags     {tags}", f"backend  {_backend(stats)}",
             f"index    {stats['index_bytes'] / 1e6:.1f} MB, catalog {stats['catalog_bytes'] / 1e6:.1f} MB"
             + (f" ({_per_minute(stats)})" if stats["bytes_per_audio_minute"]["index"] else ""),
             f"encoder  {stats['model_id']}",
             f"queries  {stats.get('query_encoder') or 'searched with the fingerprint (no query encoder fits)'}",
             f"gate     {_gate_text(stats.get('music_gate'))}",
             f"landmarks {_landmark_text(stats['landmarks'], stats['songs'])}",
             f"style    {stats['style_id'] or 'none (similar and genre use the fingerprint)'}, "
             f"{stats['style_vectors']} track vectors ({stats['style_bytes'] / 1e3:.1f} kB)",
             "unknown  an answer needs confidence 50 % or more: the bar below which a clip is \"not in the "
             "library\" (README, \"Confidence\")"]
    if stats["verify_top"] and stats.get("score_rule"):
        lines.append(f"         the bar: a line learnt on validation clips over the best song's similarity, share of the clip "
                     f"explained by its spectrogram (top {stats['verify_top']} songs checked), vote share and margin, "
                     "and the next song's similarity and explained share")
        lines.append("         (clip seconds, bias, weights: " + "; ".join(
            f"{p[0]:g} s: {p[1]:.2f}, " + ", ".join(f"{w:.2f}" for w in p[2:]) for p in stats["score_rule"]) + ")")
    elif stats["verify_top"]:
        lines.append(f"         the bar: evidence {stats['min_evidence']:.3f} = similarity + {stats['verify_weight']:g} × "
                     f"share of the clip explained by the song's spectrogram (top {stats['verify_top']} songs checked)")
        if stats.get("min_lead"):
            lines.append(f"         and a lead of {stats['min_lead']:.3f} over the next song's evidence")
        for seconds, evidence, lead in stats.get("short_bars", [])[:-1]:
            lines.append(f"         {seconds:g}-s clips: evidence {evidence:.3f}, lead {lead:.3f}")
    else:
        lines.append(f"         the bar: similarity {stats['min_similarity']:.3f} for 3-s clips, "
                     f"{stats['min_similarity_long']:.3f} for long ones (no spectral verification)")
    print("\n".join(lines))
    return EXIT_OK


def _backend(stats: dict) -> str:
    """The backend, and how FAISS stores the vectors (its codec) or where Milvus keeps them."""
    config = stats.get("index_config") or {}
    if stats["backend"] == "faiss":
        trained = stats.get("codec_trained_at")
        return f"faiss ({config.get('faiss_factory')}" + (f", codec trained at {trained:,} vectors)" if trained else ")")
    if stats["backend"] == "milvus":
        return f"milvus ({config.get('uri') or 'Milvus Lite file'}, {config.get('milvus_index')})"
    return stats["backend"]


def _landmark_text(landmarks: dict, songs: int) -> str:
    if not landmarks["enabled"]:
        return "none (library made with --no-landmarks)"
    if not landmarks["min_aligned"]:
        return "not searched (this library's settings predate landmarks: `tuneprint reindex` adds them)"
    missing = (f"; {songs - landmarks['songs']} songs added before landmarks have none (tuneprint reindex gives them theirs)"
               if landmarks["songs"] < songs else "")
    return (f"{landmarks['pairs']} peak pairs of {landmarks['songs']} songs ({landmarks['bytes'] / 1e6:.1f} MB); a clip the "
            f"embeddings leave unknown is answered with {landmarks['min_aligned']}+ pairs at one offset and "
            f"{landmarks['min_ratio']:g}x the next song's{missing}")


def _gate_text(gate: dict | None) -> str:
    if gate is None:
        return "none fits this encoder (answers say music: null; add keeps every file)"
    kind = "logistic regression and a CNN on log-mel" if gate["cnn"] else "logistic regression"
    return f"music when P(music) >= {gate['threshold']:.3f} ({kind}, trained {gate['trained'] or 'on an unknown day'})"


def _per_minute(stats: dict) -> str:
    per = stats["bytes_per_audio_minute"]
    return (f"per minute of audio: index {per['index'] / 1e3:.1f} kB, catalog {per['catalog'] / 1e3:.1f} kB, "
            f"together {per['total'] / 1e3:.1f} kB")


def cmd_tracks(args) -> int:
    from tuneprint.server.library import Library

    with Library.open(args.library, load_encoder=False) as lib:
        for song in lib.tracks():
            print(json.dumps(song.to_dict()) if args.json else
                  f"{song.song_id}  {clock(song.duration_s):>8}  {song.title}  [{', '.join(song.labels)}]  {song.path}")
    return EXIT_OK


# -- changing ---------------------------------------------------------------------------------
def cmd_remove(args) -> int:
    from tuneprint.server.library import Library

    status = EXIT_OK
    with Library.open(args.library) as lib:
        for song_id in args.song_ids:
            try:
                song = lib.remove(song_id)
                print(f"removed {song_id} ({song.title})")
            except LibraryError as e:
                print_error(str(e))
                status = EXIT_PARTIAL
    return status


def cmd_reindex(args) -> int:
    from tuneprint.server.library import Library

    with Library.open(args.library, check_model=False) as lib:
        with Progress(len(lib.tracks()), desc="re-embedding", unit="song") as bar:
            n = lib.reindex(progress=lambda song: bar.update(audio_s=song.duration_s), faiss_factory=args.faiss_factory)
    print(f"re-embedded {n} songs with encoder {lib.model_id}")
    return EXIT_OK


def cmd_doctor(args) -> int:
    """Exit 0 when the library is healthy (or was repaired whole), 3 when problems remain."""
    from tuneprint.server import doctor

    if args.repair:
        with Progress(0, desc="re-embedding", unit="song") as bar:
            findings = doctor.repair(args.library, progress=lambda song: bar.update(audio_s=song.duration_s))
    else:
        findings = doctor.check(args.library)
    for f in findings:
        if args.json:
            print(json.dumps(f.to_dict()))
        else:
            state = "repaired" if f.repaired else ("can be repaired with --repair" if f.repairable else "to do")
            print(f"{args.library / f.file}: {f.problem}\n  → {f.fix} [{state}]")
    if not findings and not args.json:
        print(f"{args.library}: healthy")
    return EXIT_OK if all(f.repaired for f in findings) else EXIT_LIBRARY
