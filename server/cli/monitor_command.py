"""monitor: walk long recordings (a radio show, a DJ mix, a stream dumped to a file) and list every
stretch: which song plays, from when to when, where in the song and how sure, or no match.

Stretches are printed as they close (``--json``: one object per stretch and line); the recording is
decoded a block at a time (server/monitor.py), so hours of audio are walked in bounded memory.
"""
from __future__ import annotations

import json
import math
import sys
from contextlib import ExitStack
from pathlib import Path

from tuneprint.errors import AudioError

from .common import EXIT_OK, EXIT_PARTIAL, UsageError, about, add_command, clock, percent, print_error
from .output import Report, add_output_options
from .progress import Progress

# server.monitor.MonitorConfig's defaults (not imported here: --help stays light); tests/test_monitor.py checks them
WINDOW_S, HOP_S = 4.0, 1.0
COLUMNS = ("recording", "status", "start_s", "end_s", "song_id", "title", "artist", "path", "offset_s", "score",
           "agreement", "windows", "error")


def add_parser(sub) -> None:
    p = add_command(sub, "monitor", "Walk long recordings (a radio show, a DJ mix) and list every stretch: which "
                                    "song plays from when to when, where in the song and how sure — or no match.",
                    cmd_monitor)
    p.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING", help="audio files or folders (recursive)")
    p.add_argument("--window", type=float, default=WINDOW_S, metavar="SECONDS",
                   help=f"audio answered at a time (default {WINDOW_S:g})")
    p.add_argument("--hop", type=float, default=HOP_S, metavar="SECONDS",
                   help=f"between windows: the resolution of the boundaries (default {HOP_S:g})")
    add_output_options(p, "one JSON object per stretch")


def cmd_monitor(args) -> int:
    from tuneprint.server.library import Library, find_audio_files

    if not 0 < args.hop <= args.window:
        raise UsageError(f"--hop ({args.hop:g}) must be positive and at most --window ({args.window:g})")
    files = find_audio_files(args.recordings)
    if not files:
        print_error("no audio files found in the given paths")
        return EXIT_PARTIAL
    counts = {"matched": 0, "no match": 0, "failed": 0}
    with ExitStack() as stack:
        report = _open_report(args)
        if report is not None:
            stack.enter_context(report)
        lib = stack.enter_context(Library.open(args.library))
        for recording in files:
            if not _monitor_one(lib, recording, args, report, counts):
                counts["failed"] += 1
    if len(files) > 1 or report is not None:
        said = ", ".join(f"{n} {word}" for word, n in counts.items())
        where = f"; stretches in {report.path}" if report is not None else ""
        print(f"{len(files)} recording{'s' if len(files) != 1 else ''}: stretches {said}{where}",
              file=sys.stderr if args.json else sys.stdout, flush=True)
    return EXIT_PARTIAL if counts["failed"] else EXIT_OK


def _monitor_one(lib, recording: Path, args, report: Report | None, counts: dict) -> bool:
    """Print (or write) every stretch of one recording; False if it could not be read to its end."""
    from tuneprint.encoder.audio import audio_seconds

    total = audio_seconds(recording)
    with Progress(math.ceil(total) if total else 0, desc=f"monitoring {recording.name}", unit="second") as bar:
        walked = [0]

        def progress(seconds: float) -> None:
            step = int(seconds) - walked[0]
            if step > 0:
                bar.update(step, audio_s=step)
                walked[0] += step
        try:
            stretches = lib.monitor(recording, window_s=args.window, hop_s=args.hop, progress=progress)
            for n, stretch in enumerate(stretches):
                answer = stretch.to_dict()
                counts["matched" if answer["match"] else "no match"] += 1
                if report is not None:
                    report.write(answer, [_row(answer)])
                elif args.json:
                    bar.print(json.dumps(answer))
                else:
                    bar.print(("" if n else f"{recording}:\n") + "  " + stretch_text(answer))
        except AudioError as e:
            message = about(recording, e)
            bar.print(f"tuneprint: error: {message}", file=sys.stderr)
            if report is not None:
                report.write({"recording": str(recording.resolve()), "error": message},
                             [{"recording": str(recording.resolve()), "status": "failed", "error": message}])
            return False
    return True


def stretch_text(answer: dict) -> str:
    """``0:01:12.0–0:03:40.5  Title [song_id] at 0:37.0 in the song (confidence 93%)``, or ``… no match``."""
    span = f"{hms(answer['start_s'])}–{hms(answer['end_s'])}"
    match = answer["match"]
    if match is None:
        return f"{span}  no match"
    by = f" by {match['artist']}" if match.get("artist") else ""
    return (f"{span}  {match['title']}{by} [{match['song_id']}] at {clock(match['offset_s'])} in the song "
            f"(confidence {percent(match['score'])})")


def hms(seconds: float) -> str:
    """Seconds as h:mm:ss.s."""
    h, rest = divmod(max(seconds, 0.0), 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}"


def _row(answer: dict) -> dict:
    match = answer["match"] or {}
    return {"recording": answer["recording"], "status": "matched" if answer["match"] else "no match",
            "start_s": answer["start_s"], "end_s": answer["end_s"], "windows": answer["windows"],
            **{k: match.get(k) for k in ("song_id", "title", "artist", "path", "offset_s", "score", "agreement")}}


def _open_report(args) -> Report | None:
    if args.out is None:
        return None
    try:
        return Report(args.out, COLUMNS)
    except OSError as e:
        raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from e
