"""classify, label: learn the library's labels and tags, label clips with what was learnt, and
change a track's tags (and labels).

``classify`` has two actions, so that a clip list never meets a training option:
``tuneprint classify train --library LIB [options]`` learns a classifier from the library's
labelled tracks (stored in the library folder); ``tuneprint classify predict --library LIB
CLIP...`` answers clips with it (files or folders, ``--json``, ``--out``, a summary line, like
``identify``).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from tuneprint.errors import LibraryError
from tuneprint.server.classify.config import AGGREGATIONS, INPUTS, MODELS, NETWORKS, UNKNOWN_RULES, ClassifierConfig

from .common import EXIT_OK, UsageError, add_command, percent
from .output import add_output_options
from .progress import Progress
from .query_commands import Query, answer_clips

DEFAULTS = {f.name: f.default for f in fields(ClassifierConfig)}
EXAMPLES = """examples:
  tuneprint classify train --library LIB                  learn the labels (and tags) of the library's tracks
  tuneprint classify train --library LIB --model cnn --input cqt   a CNN trained on the tracks' CQT
  tuneprint classify predict --library LIB CLIP...        labels and tags of each clip"""


def add_parsers(sub) -> None:
    p = sub.add_parser("classify", help="Learn the library's labels and tags (train), then label clips (predict).",
                       description="Learn the library's labels and tags from its labelled tracks (train), then "
                                   "label clips with what was learnt (predict). Each action takes --library.",
                       epilog=EXAMPLES, formatter_class=_RawEpilog)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_train(actions)
    q = add_command(actions, "predict", "Labels and tags of each clip, by the library's trained classifier.",
                    cmd_predict)
    q.add_argument("clips", nargs="+", type=Path, metavar="CLIP", help="audio files or folders (recursive)")
    add_output_options(q, "one JSON object per clip")

    p = add_command(sub, "label", "Set a track's tags (the TAGs given replace its tags) and, with --label, its labels.",
                    cmd_label)
    p.add_argument("song_id", metavar="SONG_ID")
    p.add_argument("tags", nargs="*", metavar="TAG", help="the track's tags (moods, instruments, ...)")
    p.add_argument("--label", action="append", default=None, metavar="L",
                   help="the track's labels (repeatable; they replace its labels)")
    p.add_argument("--clear-tags", action="store_true", help="remove every tag of the track")
    p.add_argument("--json", action="store_true", help="print the track as JSON")


def _add_train(actions) -> None:
    t = add_command(actions, "train", "Learn a classifier from the library's labelled tracks, stored in the "
                    "library folder (on 2 CPU cores and 100 tracks: a head in under a minute, a CNN about "
                    "15 s an epoch).", cmd_train)
    d = DEFAULTS
    t.add_argument("--model", choices=MODELS, default=d["model"],
                   help=f"a head over the encoder's embeddings, or a CNN on spectrograms (default {d['model']})")
    t.add_argument("--input", choices=INPUTS, default=d["input"],
                   help=f"the CNN's input: the stored log-mel or a CQT of each file (default {d['input']})")
    t.add_argument("--network", choices=NETWORKS, default=d["network"],
                   help=f"the CNN's size: one convolution per pipeline, or four (default {d['network']})")
    t.add_argument("--depth", type=int, default=d["depth"], metavar="N",
                   help=f"the head's hidden layers; 0 is a linear classifier (default {d['depth']})")
    t.add_argument("--hidden", type=int, default=d["hidden"], metavar="N",
                   help=f"units of a hidden layer (default {d['hidden']})")
    t.add_argument("--aggregate", choices=AGGREGATIONS, default=d["aggregate"],
                   help="segments to one answer: raw (mean probability), max (each label's highest), majority "
                        f"(share of segments voting for it) (default {d['aggregate']})")
    t.add_argument("--segment-s", type=float, default=d["segment_s"], metavar="SECONDS",
                   help=f"segment length (default {d['segment_s']})")
    t.add_argument("--epochs", type=int, default=d["epochs"], metavar="N",
                   help=f"training passes (default {d['epochs']})")
    t.add_argument("--lr", type=float, default=d["lr"], help=f"initial learning rate (default {d['lr']})")
    t.add_argument("--lr-decay", type=float, default=d["lr_decay"], metavar="RATE",
                   help=f"learning rate × RATE after each epoch (default {d['lr_decay']})")
    t.add_argument("--no-class-weights", action="store_true",
                   help="let common labels (tags) count more than rare ones")
    t.add_argument("--others-min-tracks", type=int, default=d["others_min_tracks"], metavar="N",
                   help="tags on fewer tracks are folded into 'Others'; 0 keeps every tag "
                        f"(default {d['others_min_tracks']})")
    t.add_argument("--unknown", choices=UNKNOWN_RULES, default=d["unknown"],
                   help="when a clip is 'unknown': far from every training segment, or top label below "
                        f"--min-probability (default {d['unknown']})")
    t.add_argument("--unknown-quantile", type=float, default=d["unknown_quantile"], metavar="Q",
                   help="distance rule: the bar is this quantile of training tracks' similarity to the other "
                        f"tracks (default {d['unknown_quantile']})")
    t.add_argument("--min-probability", type=float, default=d["min_probability"], metavar="P",
                   help=f"probability rule: the least top-label probability (default {d['min_probability']})")
    t.add_argument("--labels", type=_names, metavar="L1,L2", help="learn only these labels (default: all)")
    t.add_argument("--tags", type=_names, metavar="T1,T2", help="learn only these tags (default: all)")
    t.add_argument("--json", action="store_true", help="print the training report as JSON")


class _RawEpilog(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' lines as written."""


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give one or more names separated by commas")
    return names


# -- classify train ---------------------------------------------------------------------------
def config_from(args) -> ClassifierConfig:
    try:
        return ClassifierConfig(model=args.model, input=args.input, network=args.network, depth=args.depth,
                                hidden=args.hidden, aggregate=args.aggregate, segment_s=args.segment_s,
                                epochs=args.epochs, lr=args.lr, lr_decay=args.lr_decay,
                                class_weights=not args.no_class_weights, others_min_tracks=args.others_min_tracks,
                                unknown=args.unknown, unknown_quantile=args.unknown_quantile,
                                min_probability=args.min_probability)
    except ValueError as e:
        raise UsageError(str(e)) from e


def cmd_train(args) -> int:
    cfg = config_from(args)  # a bad setting is refused before the model loads
    from tuneprint.server.classify.api import train_classifier
    from tuneprint.server.library import Library

    bars: dict[str, Progress] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = Progress(total, desc=stage, unit="track" if stage == "reading" else "epoch")
        bars[stage].update(done - bars[stage].done)

    with Library.open(args.library) as lib:
        try:
            report = train_classifier(lib, cfg, labels=args.labels, tags=args.tags, progress=progress)
        finally:
            for bar in bars.values():
                bar.close()
    if args.json:
        print(json.dumps(report.to_dict()))
        return EXIT_OK
    tags = ", ".join(report.tags) or "none (no tag is on enough tracks, or no track has tags)"
    print(f"trained a {report.model} on {report.tracks} tracks ({report.segments} segments) in {report.seconds:.1f} s\n"
          f"labels   {', '.join(report.labels)}\ntags     {tags}\nstored   {report.path}")
    return EXIT_OK


# -- classify predict -------------------------------------------------------------------------
def cmd_predict(args) -> int:
    from tuneprint.server.classify.store import has_classifier

    if (args.library / "settings.json").is_file() and not has_classifier(args.library):
        raise LibraryError(f"{args.library}: no trained classifier; train one with "
                           f"`tuneprint classify train --library {args.library}`")
    return answer_clips(args, CLASSIFY, args.clips)


def _classify(lib, clip) -> dict:
    from tuneprint.server.classify.api import classify

    return classify(lib, clip).to_dict()


def _outcome(answer: dict) -> str:
    if answer["reason"] == "not_music":
        return "not music"
    return "unknown" if answer["label"] is None else "labelled"


def _text(clip: str, answer: dict) -> str:
    if answer["reason"] == "not_music":
        return f"{clip}: not music — the music gate hears no music in it"
    others = ", ".join(f"{name} {percent(p)}" for name, p in answer["labels"][1:3])
    applied = [name for name, p in answer["tags"] if p >= answer["tag_threshold"]]
    tags = f"; tags: {', '.join(applied)}" if applied else ("; tags: none" if answer["tags"] else "")
    if answer["label"] is None:
        top = answer["labels"][0] if answer["labels"] else None
        closest = f" (closest: {top[0]} {percent(top[1])})" if top else ""
        return f"{clip}: unknown — unlike every label it learnt{closest}{tags}"
    return f"{clip}: {answer['label']} {percent(answer['labels'][0][1])}{f' ({others})' if others else ''}{tags}"


def _rows(answer: dict) -> list[dict]:
    top = answer["labels"][0] if answer["labels"] else (None, None)
    return [{"query": answer["query"], "status": _outcome(answer), "label": answer["label"],
             "probability": top[1], "labels": "; ".join(f"{n} {p:.4f}" for n, p in answer["labels"]),
             "tags": "; ".join(f"{n} {p:.4f}" for n, p in answer["tags"]), "model": answer["model"],
             "reason": answer["reason"], "music": answer["music"]}]


CLASSIFY = Query(
    verb="classifying", outcomes=("labelled", "unknown", "not music"),
    columns=("query", "status", "label", "probability", "labels", "tags", "model", "reason", "music", "error"),
    ask=_classify, outcome=_outcome, text=_text, rows=_rows)


# -- label ------------------------------------------------------------------------------------
def cmd_label(args) -> int:
    from tuneprint.server.library import Library

    if not args.tags and args.label is None and not args.clear_tags:
        raise UsageError("give the track's TAGs, --label L, or --clear-tags")
    if args.tags and args.clear_tags:
        raise UsageError("give TAGs or --clear-tags, not both")
    with Library.open(args.library, load_encoder=False) as lib:
        song = lib.song(args.song_id)
        if args.tags or args.clear_tags:
            song = lib.set_tags(args.song_id, [t.strip() for t in args.tags if t.strip()])
        if args.label is not None:
            song = lib.set_labels(args.song_id, [label.strip() for label in args.label if label.strip()])
    if args.json:
        print(json.dumps(song.to_dict()))
    else:
        print(f"{song.song_id}  {song.title}  labels: {', '.join(song.labels) or 'none'}; "
              f"tags: {', '.join(song.tags) or 'none'}")
    return EXIT_OK
