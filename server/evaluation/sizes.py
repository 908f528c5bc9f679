"""Identification against library size: the same clips answered in a library grown from a few
dozen songs to a thousand, with clips of 1, 2 and 3 s and real phone chains.

The library starts with its member songs; distractor songs (shifted copies of other corpus songs,
cached by :mod:`server.evaluation.scale`, drawn in a seeded order so that every size mixes
collections) are committed until it holds each size. Copies of the clips' own songs never enter.
Every clip is embedded once and answered at every size through :meth:`Library.identify_embeddings`;
each answer's first two candidates are kept, so that another "unknown" rule can be judged on the
same answers (:func:`index.calibration.choose_size_rule` and ``choose_score_rule`` do, for calibration).

Clips: :func:`server.evaluation.clips.random_clips` for the project's conditions (clean, noise,
phone, reverb, speed) and :mod:`server.evaluation.phone_chain` for the real phone chains.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import CONDITIONS
from tuneprint.index.landmarks import LandmarkMatch, LandmarkRule, winner
from tuneprint.index.vote import DECISION_FEATURES, SongVote, VoteConfig, decide, decision_features, lead, unknown_reason

from .clips import random_clips
from .phone_chain import CHAINS, phone_call
from .scale import cached_distractors, distractor_batches

log = logging.getLogger(__name__)

# (seconds, condition) of the clips asked of member songs and of outsiders
MEMBER_CLIPS = tuple((3.0, c) for c in CONDITIONS) + ((3.0, "phone-call"), (3.0, "phone-harsh"),
                                                       (1.0, "clean"), (1.0, "noise"), (1.0, "phone-call"),
                                                       (2.0, "clean"), (2.0, "noise"))
OUTSIDER_CLIPS = ((3.0, "clean"), (3.0, "noise"), (3.0, "phone-call"), (1.0, "clean"), (1.0, "noise"),
                  (2.0, "clean"), (2.0, "noise"))


@dataclass(frozen=True)
class SizesConfig:
    sizes: tuple[int, ...] = (30, 100, 300, 1000)  # songs in the library when the clips are answered
    clips_per_song: int = 4  # per song, length and condition
    seed: int = 7
    order_seed: int = 0  # the order distractor songs join in
    batch_songs: int = 10
    member_clips: tuple[tuple[float, str], ...] = MEMBER_CLIPS
    outsider_clips: tuple[tuple[float, str], ...] = OUTSIDER_CLIPS


@dataclass
class ClipAnswer:
    """A clip and what the library answered at one size; the first two candidates' vote figures."""

    member: bool
    seconds: float
    condition: str
    truth: str | None
    answer: str | None  # song id answered, None: "unknown"
    reason: str | None
    candidates: list[dict] = field(default_factory=list)  # {"song_id", "similarity", "verified", "share", "margin", "aligned", "patches"}
    # the songs holding most of the clip's landmarks at one offset: {"song_id", "aligned", "offset_s", "pairs"}
    landmarks: list[dict] = field(default_factory=list)


def cut_clips(lib, members, outsiders, noises, cfg: SizesConfig) -> list[tuple[bool, float, str, str | None, object]]:
    """(member, seconds, condition, true song id or None, embeddings) of every clip, embedded once."""
    rng = np.random.default_rng(cfg.seed)
    sr = lib.features.sample_rate
    truth = {s.path: s.song_id for s in lib.tracks()}
    out = []
    for path, _ in members + outsiders:
        y = load_audio(path, sr=sr)
        member = path in truth
        for seconds, condition in (cfg.member_clips if member else cfg.outsider_clips):
            for samples in _clips(y, sr, rng, noises, condition, cfg.clips_per_song, seconds):
                out.append((member, seconds, condition, truth.get(path), lib.embed_clip(samples)))
    return out


def _clips(y, sr, rng, noises, condition: str, n: int, seconds: float):
    if condition in CHAINS:
        for _ in range(n):
            start = int(rng.uniform(0, len(y) / sr - seconds) * sr)
            noise = noises[int(rng.integers(len(noises)))] if noises else rng.standard_normal(sr).astype(np.float32)
            yield phone_call(y[start : start + int(seconds * sr)], sr, noise, CHAINS[condition], rng)[0]
    else:
        for clip in random_clips(y, sr, rng, noises, [condition], n, seconds):
            yield clip.samples


def answer_all(lib, clips) -> list[ClipAnswer]:
    answers = []
    for member, seconds, condition, truth, emb in clips:
        a = lib.identify_embeddings(emb)
        found = lib.landmark_index().search(emb.landmarks) if emb.landmarks is not None else []
        answers.append(ClipAnswer(member, seconds, condition, truth, a.match.song.song_id if a.match else None, a.reason,
                                  [{"song_id": c.song.song_id, "similarity": round(c.vote.similarity, 5),
                                    "verified": None if c.vote.verified is None else round(c.vote.verified, 5),
                                    "share": round(c.vote.share, 5), "margin": round(c.vote.margin, 5),
                                    "aligned": round(c.vote.aligned, 5), "patches": c.vote.patches}
                                   for c in a.candidates],
                                  [asdict(m) for m in found]))
    return answers


def summarize(answers: list[ClipAnswer]) -> dict[str, dict]:
    """Rates per clip kind ("member 3s noise", "outsider 1s clean"): clips, right, wrong song, unknown."""
    table: dict[str, dict] = {}
    for a in answers:
        key = f"{'member' if a.member else 'outsider'} {a.seconds:g}s {a.condition}"
        row = table.setdefault(key, {"clips": 0, "right": 0, "wrong": 0, "unknown": 0})
        row["clips"] += 1
        if a.answer is None:
            row["unknown"] += 1
        elif a.answer == a.truth:
            row["right"] += 1
        else:
            row["wrong"] += 1
    return {k: {"clips": v["clips"], **{r: round(v[r] / v["clips"], 4) for r in ("right", "wrong", "unknown")}}
            for k, v in sorted(table.items())}


def distractor_order(cache: Path, exclude: list[str], seed: int) -> list[Path]:
    """Cached distractor files in a seeded order, without copies of the songs at ``exclude`` (paths) or
    of their faster versions (:func:`server.evaluation.scale.cached_distractors`)."""
    files = cached_distractors(cache, exclude)
    return [files[i] for i in np.random.default_rng(seed).permutation(len(files))]


def run_sizes(lib, members, outsiders, noises, cache: Path, cfg: SizesConfig = SizesConfig(),
              progress=None) -> dict[int, list[ClipAnswer]]:
    """Answer every clip at each of ``cfg.sizes`` songs (those below the library's start are skipped)."""
    clips = cut_clips(lib, members, outsiders, noises, cfg)
    log.info("%d clips embedded", len(clips))
    files = distractor_order(cache, [p for p, _ in members + outsiders], cfg.order_seed)
    results: dict[int, list[ClipAnswer]] = {}
    batches = distractor_batches(lib, cache, cfg.batch_songs, files=files)
    for size in sorted(cfg.sizes):
        while lib.catalog.song_count() < size:
            batch = next(batches, None)
            if batch is None:
                log.warning("the distractor cache ran out at %d songs", lib.catalog.song_count())
                return results
            lib._commit(batch[: size - lib.catalog.song_count()])
        if lib.catalog.song_count() != size:
            continue
        results[size] = answer_all(lib, clips)
        log.info("%d songs: %s", size, json.dumps(summarize(results[size])))
        if progress:
            progress(size, results[size])
    return results


def save_answers(path: Path, results: dict[int, list[ClipAnswer]], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "sizes": {str(n): [asdict(a) for a in answers]
                                                        for n, answers in results.items()}}))


def load_answers(path: Path) -> tuple[dict, dict[int, list[ClipAnswer]]]:
    data = json.loads(path.read_text())
    return data["meta"], {int(n): [ClipAnswer(**a) for a in answers] for n, answers in data["sizes"].items()}


def votes_of(answer: ClipAnswer, verify_weight: float) -> list[SongVote]:
    """An answer's saved candidates that were verified, as index.vote.rank_verified ranks them at
    ``verify_weight`` (most evidence first); empty without one."""
    votes = [SongVote(c["song_id"], 0, c["share"], c["similarity"], 0.0, c.get("aligned", 0.0), c["margin"], c["patches"],
                      c["verified"])  # answers saved before "aligned" was: 0
             for c in answer.candidates if c["verified"] is not None]
    return sorted(votes, key=lambda v: -v.evidence(verify_weight))


def rule_arrays(answers: list[ClipAnswer], verify_weight: float) -> dict[float, dict[str, np.ndarray]]:
    """Per clip length, what index.calibration's choosers judge: member, right (the first candidate is
    the clip's song), the first candidate's evidence, its lead over the next verified one, and the
    line's ``features`` (index.vote.decision_features); clips without a candidate have evidence -inf."""
    out: dict[float, dict[str, list]] = {}
    for a in answers:
        cols = out.setdefault(a.seconds, {"member": [], "right": [], "evidence": [], "lead": [], "features": []})
        votes = votes_of(a, verify_weight)
        cols["member"].append(a.member)
        cols["right"].append(bool(votes) and votes[0].song_id == a.truth)
        cols["evidence"].append(votes[0].evidence(verify_weight) if votes else -np.inf)
        cols["lead"].append(lead(votes, replace(VoteConfig(), verify_weight=verify_weight)) if votes else -np.inf)
        cols["features"].append(decision_features(votes) if votes else np.full(len(DECISION_FEATURES), np.nan))
    return {s: {k: np.array(v, dtype=bool if k in ("member", "right") else np.float64) for k, v in cols.items()}
            for s, cols in out.items()}


def rejudge(answers: list[ClipAnswer], vote: VoteConfig) -> list[ClipAnswer]:
    """The answers as ``vote`` (verifying) decides them (index.vote.decide) from their saved candidates,
    and from their landmark matches where the candidates leave a clip "unknown" (``Library.identify``'s way)."""
    out = []
    for a in answers:
        votes = votes_of(a, vote.verify_weight)
        winner = decide(votes, vote, a.seconds) if votes else None
        answer = winner.song_id if winner else landmark_answer(a, vote)
        reason = None if answer is not None else (unknown_reason(votes, vote, a.seconds) if votes else "no_match")
        out.append(replace(a, answer=answer, reason=reason))
    return out


def landmark_answer(answer: ClipAnswer, vote: VoteConfig) -> str | None:
    """The song the saved landmark matches of a clip name under ``vote``'s landmark bars, or None."""
    if not vote.landmark_min_aligned:
        return None
    found = winner([LandmarkMatch(**m) for m in answer.landmarks],
                   LandmarkRule(vote.landmark_min_aligned, vote.landmark_min_ratio))
    return found.song_id if found else None


LANDMARK_GRID = (tuple(range(6, 17)), (1.5, 2.0, 2.5, 3.0))  # (min_aligned, min_ratio) tried


def choose_landmark_rule(results: dict[int, list[ClipAnswer]], vote: VoteConfig, grid=LANDMARK_GRID) -> dict:
    """Landmark bars (``VoteConfig.landmark_min_aligned``, ``landmark_min_ratio``) for ``vote``'s embedding rule:
    of the pairs that add no wrong song and no accepted outsider at any library size to what the
    embeddings answer, the one identifying the most member clips (lengths and sizes counting alike)."""
    base = {n: rejudge(answers, replace(vote, landmark_min_aligned=0)) for n, answers in results.items()}
    tried = {}
    for aligned in grid[0]:
        for ratio in grid[1]:
            rule = replace(vote, landmark_min_aligned=aligned, landmark_min_ratio=ratio)
            judged = {n: [a if a.answer is not None else replace(a, answer=landmark_answer(a, rule)) for a in answers]
                      for n, answers in base.items()}
            added = sum(b.answer is None and a.answer is not None and a.answer != a.truth
                        for n in base for a, b in zip(judged[n], base[n]))
            tried[f"{aligned} {ratio:g}"] = {"min_aligned": aligned, "min_ratio": ratio,
                                             "member_hit_rate": round(_member_hit_rate(judged), 4), "added_errors": int(added)}
    safe = [t for t in tried.values() if t["added_errors"] == 0]
    best = max(safe, key=lambda t: (t["member_hit_rate"], t["min_aligned"], t["min_ratio"]))
    return {**best, "member_hit_rate_without": round(_member_hit_rate(base), 4), "tried": tried}


def _member_hit_rate(results: dict[int, list[ClipAnswer]]) -> float:
    """Share of member clips answered with their song, clip lengths and library sizes counting alike."""
    rates = []
    for answers in results.values():
        by_length: dict[float, list[bool]] = {}
        for a in answers:
            if a.member:
                by_length.setdefault(a.seconds, []).append(a.answer == a.truth)
        rates.append(float(np.mean([np.mean(v) for v in by_length.values()])))
    return float(np.mean(rates))
