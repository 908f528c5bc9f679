#!/usr/bin/env python3
"""Calibrate a model's "unknown" thresholds on validation songs, never on test songs.

The library holds the model's training songs plus half of the validation songs; clips
(clean, noise, phone, reverb) of those validation members must be identified, clips of the
other validation songs must come back "unknown". The vote temperature and thresholds
(``temperature``, ``min_similarity``, ``min_share``, ``min_margin`` of VoteConfig) that identify
the most member clips while rejecting at least ``--target-unknown`` of outsider clips are
written into the checkpoint's metadata; new libraries built with that model use them.

The similarity threshold holds up to a library the size of the calibration library
(``reference_songs``). Larger libraries hold more sound-alikes, so beyond it the threshold
rises with ln(songs) at ``similarity_slope``: the rise of the best impostor similarity measured
over random sub-libraries of every size (index.calibration.impostor_slope).

Clips longer than 3 s are cut into more query patches; the best song of an outsider clip is then a
typical match to fewer of them, so the same "unknown" rate holds at a lower threshold. The
threshold of ``--long-clip-seconds`` clips is chosen the same way and stored with the short
clips' as ``similarity_by_patches`` (VoteConfig.min_similarity_for interpolates between them).

Spectral verification (index/verify.py) checks the vote's top songs against their own
spectrograms. The weight of its score in the evidence (similarity + weight × verified share) and
the evidence threshold are chosen the same way, over the same clips; they are written only when
they identify more member clips than the similarity rule at the same "unknown" rate.

The choosing is index/calibration.py; the clips and the run are server/evaluation/calibrate.py.

    python scripts/calibrate.py --model encoder/weights/default.safetensors --write
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuneprint.encoder.checkpoint import update_checkpoint_extra
from tuneprint.index.calibration import CalibrationConfig
from tuneprint.server.evaluation.calibrate import CalibrationError, CalibrationRun, calibrate, stored

log = logging.getLogger("calibrate")
DEFAULT = CalibrationRun(model="")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--model", required=True, help="checkpoint to calibrate")
    p.add_argument("--clips-per-song", type=int, default=DEFAULT.clips_per_song)
    p.add_argument("--clip-seconds", type=float, default=DEFAULT.clip_seconds,
                   help="length of the calibration clips (default 3 s)")
    p.add_argument("--long-clip-seconds", type=float, default=DEFAULT.long_clip_seconds,
                   help="also calibrate the threshold of clips this long (more patches, lower bar; 0 = off)")
    p.add_argument("--target-unknown", type=float, default=DEFAULT.grids.target_unknown,
                   help="share of outsider clips to reject")
    p.add_argument("--seed", type=int, default=DEFAULT.seed)
    p.add_argument("--train-songs", type=int, default=DEFAULT.train_songs,
                   help="index only this many training songs (0 = all; for a quick check)")
    p.add_argument("--index-hop", type=int, default=DEFAULT.index_hop_frames,
                   help=f"frames between stored patches (default {DEFAULT.index_hop_frames})")
    p.add_argument("--noise-dir", type=Path, help="recorded noises for the noisy clips (default CORPUS/noise)")
    p.add_argument("--write", action="store_true", help="store the thresholds in the checkpoint")
    p.add_argument("--cache", type=Path, help="keep the clips' neighbours here (.npz) to re-choose without re-embedding")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    run = CalibrationRun(model=args.model, clips_per_song=args.clips_per_song, clip_seconds=args.clip_seconds,
                         long_clip_seconds=args.long_clip_seconds, seed=args.seed, train_songs=args.train_songs,
                         index_hop_frames=args.index_hop, noise_dir=args.noise_dir,
                         grids=CalibrationConfig(target_unknown=args.target_unknown))
    try:
        best = calibrate(args.corpus, run, cache=args.cache)
    except CalibrationError as e:
        raise SystemExit(str(e)) from e
    print(json.dumps(best, indent=2))
    if args.write:
        settings, report = stored(best)
        update_checkpoint_extra(args.model, calibration=settings, calibration_report=report)
        log.info("wrote thresholds into %s", args.model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
