"""`tuneprint train`: train the encoder on a library's own tracks, then re-embed the library."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def add_cli(command) -> None:
    p = command("train", "Train the encoder on the library's tracks (their labels feed the classifier), "
                         "then re-embed the library with it.", run)
    p.add_argument("--epochs", type=int, default=30, help="passes over the library's audio (default 30)")
    p.add_argument("--variant", default="both+contrastive",
                   help="loss terms joined by '+': decoder, classifier, contrastive, both (= decoder+classifier); "
                        "default both+contrastive")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    p.add_argument("--run", type=Path, help="run folder (default LIBRARY/runs/VARIANT)")
    p.add_argument("--noise", type=Path, help="folder of recorded noises (sound effects, speech) to mix into views")
    p.add_argument("--batch-size", type=int, default=64, help="pairs per step (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3, as the seed)")
    p.add_argument("--val-share", type=float, default=0.0,
                   help="share of songs held out to monitor retrieval during training (default 0: train on all)")
    p.add_argument("--from-default", action="store_true", help="start from the shipped weights instead of the seeded init")
    p.add_argument("--no-reindex", action="store_true", help="only train; re-embed later with `tuneprint reindex`")


def run(args) -> int:
    from tuneprint.encoder.audio import AUDIO_EXTENSIONS
    from tuneprint.encoder.checkpoint import DEFAULT_WEIGHTS
    from tuneprint.encoder.splits import song_unit
    from tuneprint.encoder.training import TrainConfig, train
    from tuneprint.server.library import Library
    from tqdm import tqdm

    with Library.open(args.library, check_model=False) as lib:
        songs = lib.tracks()
    if not songs:
        print("tuneprint train: error: the library holds no tracks", file=sys.stderr)
        return 1
    items = [(s.path, s.labels[0] if s.labels else None) for s in songs]
    val = [it for it in items if song_unit(it[0]) < args.val_share]
    items = [it for it in items if it not in val]
    noise = sorted(str(f) for f in args.noise.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS) if args.noise else []
    run_dir = args.run or args.library / "runs" / args.variant.replace("+", "-")
    cfg = TrainConfig(variant=args.variant, epochs=args.epochs, device=args.device, batch_size=args.batch_size, lr=args.lr)
    init = str(DEFAULT_WEIGHTS) if args.from_default and DEFAULT_WEIGHTS.is_file() else None
    weights = train(items, run_dir, cfg=cfg, val_items=val, noise_paths=noise, resume=args.resume, init_weights=init)
    print(f"trained: {weights} (metrics {run_dir / 'metrics.csv'}, curves {run_dir / 'loss.png'})")

    with Library.open(args.library, check_model=False) as lib:
        model_path = lib.adopt_model(weights)
    if args.no_reindex:
        print(f"the library's encoder is now {model_path}; run `tuneprint reindex --library {args.library}` before querying")
        return 0
    with Library.open(args.library, check_model=False) as lib, \
            tqdm(total=len(songs), unit="song", desc="re-embedding", disable=None, file=sys.stderr) as bar:
        n = lib.reindex(progress=lambda song: bar.update(1))
        print(f"re-embedded {n} songs with the new encoder ({lib.model_id})")
    return 0
