"""identify, similar, genre: answer every clip of the files and folders given.

Each answer goes to stdout (words, or ``--json`` objects) or to ``--out FILE``; a clip that cannot
be answered is reported once on stderr, naming the file, and the others are still answered.
A batch ends with a summary line (on stderr when stdout carries JSON).
"""
from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tuneprint.errors import AudioError

from .common import EXIT_OK, EXIT_PARTIAL, UsageError, about, add_command, clock, percent, print_error
from .output import Report, add_output_options
from .progress import Progress

# Why an identification found no song, in words.
UNKNOWN_BECAUSE = {"no_match": "no song fits well enough", "ambiguous": "two songs fit about equally well",
                   "too_short": "too little audio to tell"}
NOT_MUSIC = "not music — the music gate hears no music in it"


def add_parsers(sub) -> None:
    p = add_command(sub, "identify", "Identify which song each clip comes from, and where in it — or say it is unknown.",
                    cmd_identify)
    p.add_argument("clips", nargs="+", type=Path, metavar="CLIP", help="audio files or folders (recursive)")
    add_output_options(p, "one JSON object per clip")

    p = add_command(sub, "similar", "List the tracks nearest in style to each clip or to a stored track "
                                    "(cosine similarity of style vectors, 1 = same style).", cmd_similar)
    p.add_argument("clips", nargs="*", type=Path, metavar="CLIP", help="audio files or folders (recursive)")
    p.add_argument("--track", metavar="SONG_ID", help="a stored track instead of clips")
    p.add_argument("-n", "--top", type=int, default=10, help="how many tracks (default 10)")
    add_output_options(p, "one JSON object per clip")

    p = add_command(sub, "genre", "Label each clip: the library's trained classifier, else the majority label of "
                                  "the 10 tracks nearest in style (top 2).", cmd_genre)
    p.add_argument("clips", nargs="+", type=Path, metavar="CLIP", help="audio files or folders (recursive)")
    add_output_options(p, "one JSON object per clip")


@dataclass(frozen=True)
class Query:
    """What a command asks of each clip, and how its answers are shown and counted."""

    verb: str  # the progress bar's words, e.g. "identifying"
    outcomes: tuple[str, ...]  # the summary's words for answers, e.g. ("identified", "unknown")
    columns: tuple[str, ...]  # of --out FILE.csv
    ask: Callable  # (library, clip path) -> the answer's JSON object
    outcome: Callable[[dict], str]  # answer -> one of ``outcomes``
    text: Callable[[str, dict], str]  # (clip as named, answer) -> the words printed for it
    rows: Callable[[dict], list[dict]]  # answer -> its CSV rows


# -- identify ---------------------------------------------------------------------------------
def cmd_identify(args) -> int:
    return answer_clips(args, IDENTIFY, args.clips)


def _identify_text(clip: str, answer: dict) -> str:
    match = answer["match"]
    if answer.get("reason") == "not_music":
        return f"{clip}: {NOT_MUSIC}"
    if match is not None:
        by = f" by {match['artist']}" if match.get("artist") else ""
        found = (f", by its landmarks ({match['landmarks']['aligned']} of {match['landmarks']['pairs']} peak pairs)"
                 if match.get("by") == "landmarks" else "")
        return (f"{clip}: {match['title']!r}{by} [{match['song_id']}] at {clock(match['offset_s'])}, "
                f"{_sureness(match)}{found} — {match['path']}")
    because = UNKNOWN_BECAUSE.get(answer.get("reason"), "no song fits well enough")
    closest = answer["candidates"][0] if answer["candidates"] else None
    hint = f"; closest: {closest['title']!r}, {_sureness(closest)}" if closest else ""
    return f"{clip}: not in the library — {because}{hint}"


def _sureness(match: dict) -> str:
    """The confidence as a percentage (0.5 is the "unknown" bar); the raw score where there is none."""
    if match.get("confidence") is not None:
        return f"confidence {percent(match['confidence'])}"
    return f"score {match['score']:.2f}"


def _identify_rows(answer: dict) -> list[dict]:
    match = answer["match"] or {}
    return [{**{k: match.get(k) for k in ("song_id", "title", "artist", "path", "offset_s", "confidence",
                                          "score", "similarity", "verified", "by")},
             "query": answer["query"], "status": "identified" if answer["match"] else "unknown",
             "reason": answer.get("reason"), "clip_s": answer.get("clip_s")}]


IDENTIFY = Query(
    verb="identifying", outcomes=("identified", "unknown"),
    columns=("query", "status", "song_id", "title", "artist", "path", "offset_s", "confidence", "score",
             "similarity", "verified", "by", "reason", "clip_s", "error"),
    ask=lambda lib, clip: lib.identify(clip).to_dict(),
    outcome=lambda answer: "identified" if answer["match"] else "unknown",
    text=_identify_text, rows=_identify_rows)


# -- genre ------------------------------------------------------------------------------------
def cmd_genre(args) -> int:
    return answer_clips(args, GENRE, args.clips)


def _genre_text(clip: str, answer: dict) -> str:
    votes = ", ".join(f"{label} {percent(share)}" for label, share in answer["top"])
    if answer.get("reason") == "not_music":
        return f"{clip}: {NOT_MUSIC}"
    if answer["label"] is not None:
        return f"{clip}: {answer['label']} ({votes})"
    if not answer["top"]:
        return f"{clip}: no clear label — no labelled tracks among its neighbours"
    return f"{clip}: no clear label — the neighbours disagree, or it sounds like nothing in the library ({votes})"


GENRE = Query(
    verb="labelling", outcomes=("labelled", "no clear label"),
    columns=("query", "status", "label", "top", "reason", "error"),
    ask=lambda lib, clip: lib.label(clip).to_dict(),
    outcome=lambda answer: "labelled" if answer["label"] is not None else "no clear label",
    text=_genre_text,
    rows=lambda answer: [{"query": answer["query"], "label": answer["label"], "reason": answer.get("reason"),
                          "status": "labelled" if answer["label"] is not None else "no clear label",
                          "top": "; ".join(f"{label} {share:.4f}" for label, share in answer["top"])}])


# -- similar ----------------------------------------------------------------------------------
def cmd_similar(args) -> int:
    if bool(args.clips) == (args.track is not None):
        raise UsageError("give CLIPs or --track SONG_ID (one of them)")
    query = _similar_query(args.top)
    if args.track is None:
        return answer_clips(args, query, args.clips)
    from tuneprint.server.library import Library

    with ExitStack() as stack:
        report = _open_report(args, query)
        if report is not None:
            stack.enter_context(report)
        lib = stack.enter_context(Library.open(args.library))
        answer = lib.similar(track=args.track, n=args.top).to_dict()
        if report is not None:
            report.write(answer, query.rows(answer))
        elif args.json:
            print(json.dumps(answer))
        else:
            print(query.text(f"{lib.song(args.track).title} [{args.track}]", answer))
    return EXIT_OK


def _similar_query(top: int) -> Query:
    return Query(
        verb="searching", outcomes=("answered",),
        columns=("query", "status", "rank", "song_id", "title", "path", "score", "labels", "shared_labels", "error"),
        ask=lambda lib, clip: lib.similar(clip, n=top).to_dict(),
        outcome=lambda answer: "answered", text=_similar_text, rows=_similar_rows)


def _similar_text(name: str, answer: dict) -> str:
    if answer.get("reason") == "not_music":
        return f"{name}: {NOT_MUSIC}"
    by = "in style " if answer.get("by") == "style" else ""
    lines = [f"nearest {by}to {name}:"]
    for i, n in enumerate(answer["neighbours"], 1):
        shared = f"  (shares {', '.join(n['shared_labels'])})" if n.get("shared_labels") else ""
        lines.append(f"{i:3d}. {n['score']:.3f}  {n['title']} [{n['song_id']}]  {', '.join(n['labels'])}{shared}")
    return "\n".join(lines)


def _similar_rows(answer: dict) -> list[dict]:
    if answer.get("reason") == "not_music":
        return [{"query": answer["query"], "status": "not music"}]
    return [{"query": answer["query"], "status": "answered", "rank": i, "song_id": n["song_id"], "title": n["title"],
             "path": n["path"], "score": n["score"], "labels": "; ".join(n["labels"]),
             "shared_labels": "; ".join(n.get("shared_labels", ()))}
            for i, n in enumerate(answer["neighbours"], 1)]


# -- the batch --------------------------------------------------------------------------------
def answer_clips(args, query: Query, clips: list[Path]) -> int:
    """Ask ``query`` of every audio file in ``clips`` (folders expanded), print or write the answers,
    count them and say how it went."""
    from tuneprint.server.library import Library, find_audio_files

    files = find_audio_files(clips)
    if not files:
        print_error("no audio files found in the given paths")
        return EXIT_PARTIAL
    counts = dict.fromkeys((*query.outcomes, "failed"), 0)
    with ExitStack() as stack:
        report = _open_report(args, query)  # first: a path that cannot be written fails before the model loads
        if report is not None:
            stack.enter_context(report)
        lib = stack.enter_context(Library.open(args.library))
        bar = stack.enter_context(Progress(len(files), desc=query.verb, unit="clip"))
        for clip in files:
            try:
                answer = query.ask(lib, clip)
            except AudioError as e:
                message = about(clip, e)
                bar.print(f"tuneprint: error: {message}", file=sys.stderr)
                counts["failed"] += 1
                if report is not None:
                    report.failed(str(clip.resolve()), message)
            else:
                counts[query.outcome(answer)] += 1
                if report is not None:
                    report.write(answer, query.rows(answer))
                else:
                    bar.print(json.dumps(answer) if args.json else query.text(str(clip), answer))
            bar.update()
    if len(files) > 1 or report is not None:
        _summary(len(files), counts, report, stream=sys.stderr if args.json else sys.stdout)
    return EXIT_PARTIAL if counts["failed"] else EXIT_OK


def _open_report(args, query: Query) -> Report | None:
    if args.out is None:
        return None
    try:
        return Report(args.out, query.columns)
    except OSError as e:
        raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from e


def _summary(n: int, counts: dict[str, int], report: Report | None, stream) -> None:
    said = ", ".join(f"{count} {word}" for word, count in counts.items())
    where = f"; answers in {report.path}" if report is not None else ""
    print(f"{n} clip{'s' if n != 1 else ''}: {said}{where}", file=stream, flush=True)
