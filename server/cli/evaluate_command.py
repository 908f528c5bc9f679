"""evaluate: how well the library works on its own music; writes report.md, report.json and figures.

The evaluation (and its numerical stack) is imported only when the command runs. Its section names
are written out here for ``--skip``'s choices; tests/test_cli.py checks them against the evaluation's.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from .common import UsageError, add_command
from .progress import Progress

SECTIONS = ("identification", "labels", "classifier", "baseline", "map", "timing", "classifiers")
CNN_INPUTS = ("mel", "cqt")


def add_parser(sub) -> None:
    p = add_command(sub, "evaluate", "Measure identification, labelling, the embedding map, search speed and "
                                     "classifiers trained on the library's labels, on its own tracks (splits by "
                                     "song), and write a report.", cmd_evaluate)
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of songs kept out of the identification index to measure 'unknown', and of each "
                        "label's tracks held out of the trained classifiers (section 'classifiers') (default 0.2)")
    p.add_argument("--out", type=Path, help="output folder for report.md, report.json and figures "
                                            "(default LIBRARY/evaluation)")
    p.add_argument("--json", action="store_true", help="print the report's numbers as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, clip offsets and degradations (default 0)")
    p.add_argument("--clips-per-song", type=int, help="random clip offsets per song and duration (default 3)")
    p.add_argument("--durations", help="clip lengths in seconds, comma-separated (default 1,3,5,10)")
    p.add_argument("--noise", type=Path, help="folder of recorded noises to mix into clips (default: coloured noise)")
    p.add_argument("--train-config", type=Path,
                   help="the encoder's training run config.json, when it is not found beside the model")
    p.add_argument("--classifier", type=Path,
                   help="checkpoint with a classifier head (a run's model.safetensors) when the library's has none")
    p.add_argument("--include-trained", action="store_true", help="also query songs the encoder was trained on")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out (repeatable)")
    p.add_argument("--timing-vectors", type=int, help="snippets indexed for search timing (default 20000)")
    p.add_argument("--map-points", type=int, help="sub-tracks drawn in the t-SNE / PCA map (default 2000)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the network and BLAS (default: as they are; 1 is faster on a busy machine)")
    p.add_argument("--cnn-inputs", nargs="*", choices=CNN_INPUTS, metavar="INPUT",
                   help="section 'classifiers': the spectrograms a CNN is trained on, mel and/or cqt, none given: no "
                        "CNN (default: mel cqt). Slow on a CPU: on 2 cores and 73 training tracks, 20 epochs took "
                        "about 1 min on mel and 6 min on cqt (the CQT is computed from every file)")
    p.add_argument("--cnn-epochs", type=int, help="section 'classifiers': the CNN's training epochs (default 10; "
                                                  "3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a fast check: 1- and 3-s clips, one per song, small samples, 3 CNN epochs")


def cmd_evaluate(args) -> int:
    from tuneprint.server.evaluation.run import evaluate
    from tuneprint.server.library import Library

    if not 0.0 <= args.holdout < 1.0:
        raise UsageError("--holdout must be in [0, 1)")
    if args.cnn_epochs is not None and args.cnn_epochs < 1:
        raise UsageError("--cnn-epochs must be at least 1")
    cfg = config_from_args(args)
    out = args.out or args.library / "evaluation"
    stages = Stages()
    with Library.open(args.library) as lib:
        try:
            report = evaluate(lib, cfg, out_dir=out, progress=stages)
        finally:
            stages.close()
    if args.json:
        print(json.dumps(report))
    else:
        print(f"report: {out / 'report.md'} (numbers in {out / 'report.json'})")
        for key, value in report["headline"].items():
            print(f"  {key:45s} {'n/a' if value is None else f'{value:.1%}'}")
    return 0


def config_from_args(args):
    """The evaluation's configuration: the quick or full preset, changed by the options given."""
    from tuneprint.server.evaluation.run import EvalConfig

    cfg = EvalConfig.quick() if args.quick else EvalConfig()
    clips = cfg.clips
    if args.clips_per_song is not None:
        clips = replace(clips, clips_per_song=args.clips_per_song)
    if args.durations:
        try:
            clips = replace(clips, durations_s=tuple(float(d) for d in args.durations.split(",") if d.strip()))
        except ValueError as e:
            raise UsageError(f"--durations takes seconds separated by commas, e.g. 1,3,5 ({e})") from e
    timing = cfg.timing if args.timing_vectors is None else replace(cfg.timing, max_vectors=args.timing_vectors)
    return replace(cfg, holdout=args.holdout, seed=args.seed, clips=clips, timing=timing,
                   sections=tuple(s for s in SECTIONS if s not in args.skip),
                   map_points=args.map_points if args.map_points is not None else cfg.map_points,
                   noise_dir=str(args.noise) if args.noise else None,
                   train_config=str(args.train_config) if args.train_config else None,
                   classifier=str(args.classifier) if args.classifier else None,
                   include_trained=args.include_trained, threads=args.threads,
                   cnn_inputs=cfg.cnn_inputs if args.cnn_inputs is None else tuple(dict.fromkeys(args.cnn_inputs)),
                   cnn_epochs=cfg.cnn_epochs if args.cnn_epochs is None else args.cnn_epochs)


class Stages:
    """The evaluation's ``progress(stage, done, total)``: one :class:`Progress` per stage, in turn."""

    def __init__(self):
        self.stage: str | None = None
        self.bar: Progress | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, Progress(total, desc=stage, unit="step")
        if done > self.bar.done:
            self.bar.update(done - self.bar.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.stage, self.bar = None, None
