"""train: tune the encoder to the library's own tracks, then re-embed the library.

The training itself is library code (:mod:`tuneprint.server.train`); this module is its options
and its report.
"""
from __future__ import annotations

from pathlib import Path

from .common import EXIT_OK, EXIT_PARTIAL, add_command, print_error
from .progress import Progress


def add_parser(sub) -> None:
    p = add_command(sub, "train", "Train the encoder on the library's tracks (their labels feed the classifier), "
                                  "then re-embed the library with it.", cmd_train)
    p.add_argument("--epochs", type=int, default=30, help="passes over the library's audio (default 30)")
    p.add_argument("--variant", default="both+contrastive",
                   help="loss terms joined by '+': decoder, classifier, contrastive, both (= decoder+classifier); "
                        "default both+contrastive")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    # dest run_dir: `args.run` is every command's handler
    p.add_argument("--run", dest="run_dir", metavar="RUN", type=Path, help="run folder (default LIBRARY/runs/VARIANT)")
    p.add_argument("--noise", type=Path, help="folder of recorded noises (sound effects, speech) to mix into views")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3, as the seed)")
    p.add_argument("--val-share", type=float, default=0.0,
                   help="share of songs held out to monitor retrieval during training (default 0: train on all)")
    p.add_argument("--from-default", action="store_true", help="start from the shipped weights instead of the seeded init")
    p.add_argument("--no-reindex", action="store_true", help="only train; re-embed later with `tuneprint reindex`")
    p.add_argument("--style", action="store_true",
                   help="train the style head (what `similar` and `genre` search) instead of the encoder: "
                        "minutes on a CPU; the fingerprint does not change")
    p.add_argument("--objective", choices=["track", "supcon", "both"], default="track",
                   help="with --style: track = two moments of a track are alike (needs no labels); supcon = "
                        "tracks of one label are alike; both (default track)")
    p.add_argument("--steps", type=int, default=1500, help="with --style: training steps of the head (default 1500)")


def cmd_train(args) -> int:
    if args.style:
        return _train_style(args)
    from tuneprint.encoder.training import TrainConfig
    from tuneprint.server.library import Library
    from tuneprint.server.train import adopt_encoder, train_on_library

    with Library.open(args.library, check_model=False, load_encoder=False) as lib:
        if not lib.tracks(limit=1):
            print_error("the library holds no tracks", "train")
            return EXIT_PARTIAL
    cfg = TrainConfig(variant=args.variant, epochs=args.epochs, device=args.device, batch_size=args.batch_size, lr=args.lr)
    trained = train_on_library(args.library, cfg=cfg, run_dir=args.run_dir, noise_dir=args.noise,
                               val_share=args.val_share, from_default=args.from_default, resume=args.resume)
    print(f"trained: {trained.weights} (metrics {trained.run_dir / 'metrics.csv'}, curves {trained.run_dir / 'loss.png'})")
    if args.no_reindex:
        adopted = adopt_encoder(args.library, trained.weights, reindex=False)
        print(f"the library's encoder is now {adopted.model_path}; "
              f"run `tuneprint reindex --library {args.library}` before querying")
        return EXIT_OK
    with Progress(trained.songs, desc="re-embedding", unit="song") as bar:
        adopted = adopt_encoder(args.library, trained.weights, progress=lambda song: bar.update(audio_s=song.duration_s))
    print(f"re-embedded {adopted.reembedded} songs with the new encoder ({adopted.model_id})")
    return EXIT_OK


def _train_style(args) -> int:
    from tuneprint.encoder.style_training import StyleTrainConfig
    from tuneprint.server.library import Library
    from tuneprint.server.train import train_style_on_library

    with Library.open(args.library, check_model=False, load_encoder=False) as lib:
        n = len(lib.tracks())
    cfg = StyleTrainConfig(objective=args.objective, steps=args.steps)
    with Progress(n, desc="style statistics", unit="song") as bar:
        run = train_style_on_library(args.library, cfg=cfg, progress=lambda done, total: bar.update())
    s = run.summary
    print(f"style head trained ({s['config']['objective']}, {s['tracks']} tracks, {s['patches']} patches, "
          f"{s['seconds']:.0f} s, loss {s['final_loss']}): {run.path}")
    if args.no_reindex:
        print(f"run `tuneprint reindex --library {args.library}` before `similar` or `genre`")
        return EXIT_OK
    with Progress(n, desc="re-embedding", unit="song") as bar:
        with Library.open(args.library, check_model=False) as lib:
            done = lib.reindex(progress=lambda song: bar.update(audio_s=song.duration_s))
    print(f"re-embedded {done} songs with the new style head")
    return EXIT_OK
