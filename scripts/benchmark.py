#!/usr/bin/env python3
"""Identification benchmark on the development corpus (issue 2 and issue 3's floors).

Builds a library from songs the shipped model never trained on (encoder/splits.py: the
seen collections' test songs and every song of the unseen collections), keeps a third
of them out as "not in the library", then reports:

- hit rate of 3-s clips at random offsets: clean, with recorded sound effects/speech mixed
  in at 0–10 dB SNR, phone-like (300–3400 Hz at 8 kHz, MP3/GSM, noise at 10–20 dB), and
  reverberant (RT60 0.3–0.9 s), and the share answered wrongly / "unknown";
- the share of clips of songs not in the library answered "unknown";
- ingest speed as a multiple of real time, index size per minute of audio, query latency.

    python scripts/fetch_corpus.py --out data/corpus
    python scripts/benchmark.py --corpus data/corpus --out docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_report import write_section  # noqa: E402

from tuneprint.encoder.audio import load_audio  # noqa: E402
from tuneprint.encoder.augment import CONDITIONS, apply_condition  # noqa: E402
from tuneprint.encoder.splits import read_manifest, song_unit, split_songs  # noqa: E402
from tuneprint.index.vectors import IndexConfig  # noqa: E402
from tuneprint.server.library import Library, LibrarySettings  # noqa: E402

log = logging.getLogger("benchmark")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--model", default="default", help="'default', 'seeded' or a checkpoint path")
    p.add_argument("--backend", choices=["faiss", "annoy"], default="faiss")
    p.add_argument("--clips-per-song", type=int, default=8, help="clips per song and condition")
    p.add_argument("--clip-seconds", type=float, default=3.0, help="length of each clip (default 3 s, issue 3's)")
    p.add_argument("--outsider-share", type=float, default=0.33, help="share of held-out songs kept out of the library")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--noise-dir", type=Path, help="recorded noises to mix in (default CORPUS/noise, the bank training "
                   "also used; CORPUS/noise-heldout holds sounds it never heard)")
    p.add_argument("--index-hop", type=int, default=LibrarySettings.index_hop_frames,
                   help=f"frames between stored patches (default {LibrarySettings.index_hop_frames})")
    p.add_argument("--library", type=Path, help="where to build the library (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="markdown file to write the results section into (docs/BENCHMARKS.md)")
    p.add_argument("--json", type=Path, help="write every clip's outcome here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    members, outsiders, noises = held_out_songs(args.corpus, args.outsider_share, args.noise_dir)
    root = args.library or Path(tempfile.mkdtemp(prefix="tuneprint-bench-")) / "library"
    shutil.rmtree(root, ignore_errors=True)
    lib = Library.create(root, LibrarySettings(model=args.model, index=IndexConfig(backend=args.backend),
                                                  index_hop_frames=args.index_hop))
    started = time.perf_counter()
    lib.add([path for path, _ in members], labels={path: [label] for path, label in members})
    ingest_s = time.perf_counter() - started
    stats = lib.stats()
    audio_s = stats["hours"] * 3600
    log.info("ingested %d songs, %.1f min of audio in %.1f s (%.0fx real time)",
             stats["songs"], audio_s / 60, ingest_s, audio_s / ingest_s)
    outcomes, latencies = identify_clips(lib, members, outsiders, noises, args.clips_per_song, args.seed,
                                         seconds=args.clip_seconds)
    if args.json:
        args.json.write_text(json.dumps(outcomes, indent=1))
    body = summarize(outcomes, latencies, stats, ingest_s, audio_s, len(members), len(outsiders), args, lib, noises)
    print(body)
    if args.out:
        # a re-draw of the clips, or another noise bank, gets its own section
        key, title = f"identify-{args.backend}", args.backend
        if args.seed != p.get_default("seed"):
            key, title = f"{key}-seed{args.seed}", f"{title}, clip seed {args.seed}"
        if args.noise_dir:
            key, title = f"{key}-{args.noise_dir.name}", f"{title}, noise from {args.noise_dir.name}/"
        seconds = f"{args.clip_seconds:g}"
        if args.clip_seconds != p.get_default("clip_seconds"):
            key = f"{key}-{seconds}s"
        write_section(args.out, key, f"Identification of {seconds}-s clips ({title})", body)
    lib.close()
    if not args.library:
        shutil.rmtree(root.parent, ignore_errors=True)
    return 0


def held_out_songs(corpus: Path, outsider_share: float, noise_dir: Path | None = None):
    """Songs no training run sees (test + unseen collections), split into library members and
    outsiders (kept out of the library), and the recorded noises to mix into clips."""
    parts = split_songs(read_manifest(corpus))
    held_out = parts["test"] + parts["unseen"]
    outsiders = [it for it in held_out if song_unit(it[0], "outsider") < outsider_share]
    members = [it for it in held_out if it not in outsiders]
    noises = [load_audio(f) for f in sorted((noise_dir or corpus / "noise").iterdir())]
    return members, outsiders, noises


def identify_clips(lib: Library, members, outsiders, noises, clips_per_song: int, seed: int,
                   conditions=CONDITIONS, seconds: float = 3.0) -> tuple[list[dict], list[float]]:
    """Identify clips of ``seconds`` at random offsets: every condition for members, clean and noise for outsiders."""
    rng = np.random.default_rng(seed)
    sr = lib.features.sample_rate
    outcomes, latencies = [], []
    song_of_path = {s.path: s.song_id for s in lib.tracks()}
    for path, label in members + outsiders:
        y = load_audio(path, sr=sr)
        member = path in song_of_path
        for condition in conditions if member else ("clean", "noise"):
            for _ in range(clips_per_song):
                start = rng.uniform(0, len(y) / sr - seconds)
                drawn: dict = {}
                clip = apply_condition(y[int(start * sr) : int(start * sr) + int(seconds * sr)], condition, sr, rng, noises,
                                       info=drawn)
                t0 = time.perf_counter()
                answer = lib.identify_embeddings(lib.embed_clip(clip), name=path)
                latencies.append(time.perf_counter() - t0)
                m = answer.match
                top = answer.candidates[0] if answer.candidates else None
                outcomes.append({
                    "path": path, "label": label, "member": member, "condition": condition, "start_s": round(start, 2),
                    "truth": song_of_path.get(path), "match": m.song.song_id if m else None,
                    "offset_s": round(m.vote.offset_s, 2) if m else None,
                    "top": top.song.song_id if top else None, "top_share": top.vote.share if top else 0.0,
                    "top_similarity": top.vote.similarity if top else 0.0,
                    "top_verified": top.vote.verified if top else None, "snr_db": drawn.get("snr_db"),
                    "noise_index": drawn.get("noise_index"),  # into the noise folder's sorted file names
                })
    return outcomes, latencies


def hit_rates(outcomes: list[dict]) -> dict[str, float]:
    """Share of member clips identified as the right song, per condition; and outsiders' unknown rate."""
    rates = {c: float(np.mean([o["match"] == o["truth"] for o in outcomes if o["member"] and o["condition"] == c]))
             for c in {o["condition"] for o in outcomes if o["member"]}}
    outs = [o["match"] is None for o in outcomes if not o["member"]]
    rates["unknown_for_outsiders"] = float(np.mean(outs)) if outs else float("nan")
    return rates


SNR_BANDS = ((0.0, 2.5), (2.5, 5.0), (5.0, 7.5), (7.5, 10.0))


def noise_by_snr(outcomes: list[dict]) -> str:
    """Hit rate of the member clips of the "noise" condition in bands of their SNR, in words."""
    noisy = [o for o in outcomes if o["member"] and o["condition"] == "noise" and o.get("snr_db") is not None]
    parts = []
    for low, high in SNR_BANDS:
        band = [o["match"] == o["truth"] for o in noisy if low <= o["snr_db"] < high]
        if band:
            parts.append(f"{low:g}–{high:g} dB {np.mean(band):.1%} ({len(band)})")
    return ", ".join(parts) or "not recorded"


def verification(stats: dict) -> str:
    """How the answers were decided, in words (the library's thresholds at its size)."""
    if not stats.get("verify_top"):
        return (f"Decided by similarity alone (\"unknown\" below {stats['min_similarity']:.3f}); "
                "no spectral verification.")
    return (f"Spectral verification (index/verify.py) of the top {stats['verify_top']} songs: the answer is the song "
            f"with the most evidence = similarity + {stats['verify_weight']:g} × share of the clip its spectrogram "
            f"explains, \"unknown\" below {stats['min_evidence']:.3f}.")


def summarize(outcomes, latencies, stats, ingest_s, audio_s, n_members, n_outsiders, args, lib, noises) -> str:
    rows = []
    for condition in CONDITIONS:
        clips = [o for o in outcomes if o["member"] and o["condition"] == condition]
        if not clips:
            continue
        hit = np.mean([o["match"] == o["truth"] for o in clips])
        wrong = np.mean([o["match"] is not None and o["match"] != o["truth"] for o in clips])
        unknown = np.mean([o["match"] is None for o in clips])
        top1 = np.mean([o["top"] == o["truth"] for o in clips])
        offset_err = [abs(o["offset_s"] - o["start_s"]) for o in clips if o["match"] == o["truth"]]
        rows.append(f"| {condition} | {len(clips)} | {hit:.1%} | {wrong:.1%} | {unknown:.1%} | {top1:.1%} | "
                    f"{np.median(offset_err) if offset_err else float('nan'):.2f} |")
    by_snr = noise_by_snr(outcomes)
    outs = [o for o in outcomes if not o["member"]]
    unknown_rate = np.mean([o["match"] is None for o in outs]) if outs else float("nan")
    ms = 1000 * np.array(latencies)
    noise_dir = (args.noise_dir or args.corpus / "noise").name
    return f"""
Library: {n_members} songs the model never trained on ({audio_s / 60:.0f} min, backend `{stats['backend']}`,
encoder `{lib.model_id}`, patch hop {stats['patch_hop_s']} s); {n_outsiders} further held-out songs stay
outside the library. {args.clips_per_song} clips of {args.clip_seconds:g} s per song and condition, random offsets, seed {args.seed}.
{verification(stats)}

| condition | clips | hit (right song) | wrong song | "unknown" | right song ranked first | median offset error (s) |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

- noisy clips identified by SNR: {by_snr}
- clips of songs **not** in the library answered "unknown": **{unknown_rate:.1%}** of {len(outs)} (clean and noisy)
- ingest: {audio_s / 60:.1f} min of audio in {ingest_s:.1f} s = **{audio_s / ingest_s:.0f}× real time** (decode + features + embedding + index)
- index size: {stats['index_bytes'] / 1e6:.1f} MB for {stats['vectors']} vectors = **{stats['index_bytes'] / 1024 / (audio_s / 60):.0f} KiB per minute of audio**; catalog (with the songs' spectrograms) {stats['catalog_bytes'] / 1e6:.1f} MB = {stats['catalog_bytes'] / 1024 / (audio_s / 60):.0f} KiB per minute
- query latency ({args.clip_seconds:g}-s clip in memory → answer; embedding, search, vote): median **{np.median(ms):.1f} ms**, p95 {np.percentile(ms, 95):.1f} ms

Conditions: *noise* = a recorded sound effect or voice from `{noise_dir}/` ({len(noises)} files) mixed in at 0–10 dB SNR;
*phone* = recorded noise at 10–20 dB SNR, then 300–3400 Hz at 8 kHz through low-bitrate MP3 or GSM;
*reverb* = a synthetic room (RT60 0.3–0.9 s).
"""


if __name__ == "__main__":
    sys.exit(main())
