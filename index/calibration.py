"""Choosing a model's "unknown" thresholds from calibration clips: pure functions over arrays.

A calibration library holds known songs; clips of its *member* songs must be identified, clips
of *outsider* songs must come back "unknown". Every rule here picks the setting that identifies
the most member clips while answering at least ``target_unknown`` of the outsider clips "unknown":

- :func:`choose_vote_rule`: the vote temperature and the similarity, share and margin bars;
- :func:`long_clip_threshold`: the similarity bar of longer clips (more query patches: the best
  song of an outsider clip is a typical match to fewer of them, so its bar can be lower);
- :func:`choose_verification`: the weight of the verified share in the evidence, and the
  evidence bar, kept only when verification beats the similarity rule;
- :func:`impostor_slope`: how fast the best impostor's similarity rises with library size
  (``VoteConfig.similarity_slope``);
- :func:`choose_size_rule` and :func:`choose_score_rule`: bars on the evidence and the lead, or one
  learnt line over both candidates' figures, that hold at every library size measured.

The clips' votes come from the identification pipeline (:mod:`index.search`); here they are arrays
(:class:`TopVotes`), one value per clip.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tuneprint.encoder.augment import CONDITIONS

from .vote import SongVote

LIBRARY_SIZES = (10, 14, 20, 28, 40, 56, 80, 112, 160, 224, 320)  # sub-libraries impostor_slope measures


@dataclass(frozen=True)
class CalibrationConfig:
    """The grids the thresholds are chosen on, and the "unknown" rate they must reach."""

    target_unknown: float = 0.95  # share of outsider clips that must be answered "unknown"
    # speed changes were not among the shipped calibration's clips
    conditions: tuple[str, ...] = tuple(c for c in CONDITIONS if c != "speed")
    temperatures: tuple[float | None, ...] = (None, 0.1, 0.05, 0.02, 0.01)
    min_shares: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6,
                                     0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
    min_margins: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15)
    similarity_quantiles: int = 101  # similarity bars tried: this many quantiles of the clips' similarities
    verify_top: int = 3  # songs of the vote checked against their spectrograms
    verify_weights: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5)
    library_sizes: tuple[int, ...] = LIBRARY_SIZES
    impostor_draws: int = 200  # random sub-libraries of each size


@dataclass(frozen=True)
class TopVotes:
    """Every clip's best song under one vote setting, as arrays [shape=(clips,)].

    Clips without any neighbour have ``found`` False and zeros elsewhere.
    """

    found: np.ndarray  # a song was voted at all
    right: np.ndarray  # the best song is the clip's own
    share: np.ndarray
    similarity: np.ndarray
    margin: np.ndarray
    verified: np.ndarray  # the verified share (0 where not verified)

    @classmethod
    def of(cls, tops: Sequence[SongVote | None], truth: Sequence[str | None]) -> "TopVotes":
        """From each clip's best :class:`index.vote.SongVote` (None: no neighbour) and its true song."""
        def column(get, empty=0.0):
            return np.array([get(t) if t is not None else empty for t in tops])

        return cls(found=np.array([t is not None for t in tops], dtype=bool),
                   right=np.array([t is not None and t.song_id == s for t, s in zip(tops, truth)], dtype=bool),
                   share=column(lambda t: t.share), similarity=column(lambda t: t.similarity),
                   margin=column(lambda t: t.margin), verified=column(lambda t: t.verified or 0.0))

    def evidence(self, weight: float) -> np.ndarray:
        """Similarity plus ``weight`` × the verified share, as :meth:`index.vote.SongVote.evidence`."""
        return self.similarity + weight * self.verified


def rates(accepted: np.ndarray, right: np.ndarray, member: np.ndarray) -> dict[str, float]:
    """Member clips identified (accepted and right) and outsider clips answered "unknown"."""
    return {"member_hit_rate": float((accepted & right)[member].mean()),
            "outsider_unknown_rate": float(1.0 - accepted[~member].mean())}


def per_condition(hit: np.ndarray, member: np.ndarray, condition: np.ndarray, conditions: Sequence[str]) -> dict:
    """The member hit rate of each condition."""
    return {c: float(hit[member & (condition == c)].mean()) for c in conditions}


def choose_vote_rule(tops: dict[float | None, TopVotes], member: np.ndarray, condition: np.ndarray,
                     cfg: CalibrationConfig = CalibrationConfig()) -> dict | None:
    """Grid search over vote temperature and the similarity, share and margin bars.

    Parameters
    ----------
    tops : temperature → every clip's best song at that temperature (each of ``cfg.temperatures``)
    member, condition : np.ndarray [shape=(clips,)]

    Returns
    -------
    The setting with the most member hits that answers ``cfg.target_unknown`` of the outsider clips
    "unknown" (None when no setting does), with its rates and clip counts.
    """
    best = None
    for temperature in cfg.temperatures:
        t_votes = tops[temperature]
        right, share, sim, margin = t_votes.right, t_votes.share, t_votes.similarity, t_votes.margin
        min_sims = np.unique(np.round(np.quantile(sim, np.linspace(0, 1, cfg.similarity_quantiles)), 4))
        for min_share in cfg.min_shares:
            for min_margin in cfg.min_margins:
                # accepted[t, i]: clip i passes with similarity bar min_sims[t]
                accepted = (sim[None] >= min_sims[:, None]) & (share >= min_share) & (margin >= min_margin)
                unknown = 1.0 - accepted[:, ~member].mean(axis=1)
                hit = (accepted & right)[:, member].mean(axis=1)
                hit = np.where(unknown >= cfg.target_unknown, hit, -1.0)
                t = int(np.argmax(hit))
                if hit[t] < 0 or (best is not None and hit[t] <= best["member_hit_rate"]):
                    continue
                best = {"temperature": temperature, "min_similarity": float(min_sims[t]),
                        "min_share": float(min_share), "min_margin": float(min_margin),
                        "member_hit_rate": float(hit[t]), "outsider_unknown_rate": float(unknown[t]),
                        "per_condition_hit_rate": per_condition(accepted[t] & right, member, condition, cfg.conditions),
                        "member_clips": int(member.sum()), "outsider_clips": int((~member).sum())}
    return best


def long_clip_threshold(tops: TopVotes, member: np.ndarray, best: dict, target_unknown: float) -> tuple[float, dict]:
    """The similarity bar of long clips: the lowest (never above the short clips' ``best["min_similarity"]``)
    that answers ``target_unknown`` of their outsider clips "unknown" by similarity alone.

    The share and margin tests still apply on top, but they do not count towards the target: on
    val songs the margin test rejected many long outsider clips (the library holds the training
    songs, which the encoder tells apart well), and counting it let 24 % of outsiders through
    in a library of songs the encoder never trained on (docs/BENCHMARKS.md).

    Parameters
    ----------
    tops : the long clips' best songs at ``best["temperature"]``

    Returns
    -------
    threshold, and its member hit rate and outsider "unknown" rate with the share and margin tests
    """
    passes = tops.found & (tops.share >= best["min_share"]) & (tops.margin >= best["min_margin"])
    sim = tops.similarity
    threshold = best["min_similarity"]
    for candidate in np.unique(np.round(sim[~member], 4)):  # ascending: the first that rejects enough
        if candidate <= threshold and (sim < candidate)[~member].mean() >= target_unknown:
            threshold = float(candidate)
            break
    accepted = passes & (sim >= threshold)
    return threshold, {"member_hit_rate": float((accepted & tops.right)[member].mean()),
                       "outsider_unknown_rate": float(1.0 - accepted[~member].mean())}


def evidence_bar(tops: TopVotes, weight: float, member: np.ndarray, condition: np.ndarray,
                 cfg: CalibrationConfig = CalibrationConfig()) -> dict:
    """Member clips identified when the top songs are ranked by similarity + ``weight`` × verified share
    and the bar on that evidence rejects ``cfg.target_unknown`` of outsider clips.

    Parameters
    ----------
    tops : every clip's best song after verification re-ranked its top ``cfg.verify_top`` at ``weight``
    """
    evidence = tops.evidence(weight)
    # just above the outsider quantile, rounded up so that the stored bar rejects the same clips
    quantile = float(np.quantile(evidence[~member], cfg.target_unknown, method="higher"))
    threshold = math.ceil((quantile + 1e-6) * 1e4) / 1e4
    accepted = evidence >= threshold
    return {"verify_top": cfg.verify_top, "verify_weight": weight, "min_evidence": threshold,
            **rates(accepted, tops.right, member),
            "per_condition_hit_rate": per_condition(accepted & tops.right, member, condition, cfg.conditions)}


def choose_verification(verified: dict[float, TopVotes], member: np.ndarray, condition: np.ndarray, best: dict,
                        cfg: CalibrationConfig = CalibrationConfig()) -> dict:
    """The verification weight and evidence bar that identify the most member clips while rejecting
    ``cfg.target_unknown`` of outsider clips; off (``verify_top`` 0) unless that beats both the
    similarity rule (``best``) and the same re-ranking with weight 0 (similarity alone at an equally
    fine bar).

    Parameters
    ----------
    verified : weight → every clip's best song re-ranked at that weight, for 0 and each of ``cfg.verify_weights``
    """
    tried = [evidence_bar(verified[weight], weight, member, condition, cfg) for weight in (0.0,) + cfg.verify_weights]
    chosen = max(tried[1:], key=lambda t: t["member_hit_rate"])
    baseline = max(best["member_hit_rate"], tried[0]["member_hit_rate"])
    report = {"verification": {**chosen, "similarity_rule_member_hit_rate": best["member_hit_rate"],
                               "weight_0_member_hit_rate": tried[0]["member_hit_rate"],
                               "weights_tried": {t["verify_weight"]: round(t["member_hit_rate"], 4) for t in tried}}}
    if chosen["member_hit_rate"] <= baseline:
        return {"verify_top": 0, "verify_weight": 0.0, "min_evidence": 0.0, **report}
    return {k: chosen[k] for k in ("verify_top", "verify_weight", "min_evidence")} | report


def separation(tops: TopVotes, member: np.ndarray) -> dict[str, float]:
    """How well each vote statistic alone tells identified member clips from outsider clips (ROC AUC)."""
    from sklearn.metrics import roc_auc_score

    keep = tops.found & (~member | tops.right)
    return {name: round(float(roc_auc_score(member[keep], getattr(tops, name)[keep])), 4)
            for name in ("similarity", "margin", "share")}


def impostor_slope(impostors: np.ndarray, level: float, rng: np.random.Generator, draws: int = 200,
                   library_sizes: Sequence[int] = LIBRARY_SIZES) -> tuple[float, dict[int, float]]:
    """Rise of the best impostor similarity per e-fold of library size (``similarity_slope``).

    Parameters
    ----------
    impostors : np.ndarray [shape=(clips, songs)]
        Every clip's best similarity to every song that is not its own (-inf for its own).
    level : float
        The share of clips that must stay below the threshold (the target "unknown" rate).

    Returns
    -------
    slope : float
        Of a line in ln(size) through the ``level`` quantiles of the best impostor similarity,
        over ``draws`` random libraries of each size from 10 songs up to all songs.
    quantiles : dict of library size → that quantile
    """
    n_songs = impostors.shape[1]
    sizes = [n for n in library_sizes if n < n_songs] + [n_songs]
    quantiles = {}
    for n in sizes:
        best = [impostors[:, rng.choice(n_songs, n, replace=False)].max(axis=1) for _ in range(draws)]
        best = np.concatenate(best)
        quantiles[n] = float(np.quantile(best[np.isfinite(best)], level))
    if len(sizes) < 2:
        return 0.0, quantiles
    return float(np.polyfit(np.log(sizes), list(quantiles.values()), 1)[0]), quantiles


def size_slope(song_best: np.ndarray, own: np.ndarray, seed: int,
               cfg: CalibrationConfig = CalibrationConfig()) -> tuple[float, dict[int, float]]:
    """:func:`impostor_slope` of the calibration clips, rounded for the report.

    Every calibration clip counts, members too: any song but its own is an impostor.

    Parameters
    ----------
    song_best : np.ndarray [shape=(clips, songs)], each clip's best similarity to every song of the library
    own : np.ndarray [shape=(clips,), dtype=int], the column of each clip's own song, -1 for outsiders
    """
    impostors = np.array(song_best, copy=True)
    rows = np.flatnonzero(own >= 0)
    impostors[rows, own[rows]] = -np.inf
    slope, quantiles = impostor_slope(impostors, cfg.target_unknown, np.random.default_rng(seed),
                                      cfg.impostor_draws, cfg.library_sizes)
    return round(slope, 4), {n: round(q, 4) for n, q in quantiles.items()}


@dataclass(frozen=True)
class SizeRuleConfig:
    """How :func:`choose_size_rule` chooses: the rates every library size must keep."""

    target_unknown: float = 0.97  # outsider clips answered "unknown", at every size
    max_wrong: float = 0.01  # member clips answered with another song, at every size (clips of a patch or more)
    max_wrong_short: float = 0.02  # the same for clips shorter than a patch
    evidence_quantiles: int = 201
    leads: tuple[float, ...] = tuple(np.round(np.arange(0.0, 0.401, 0.01), 3))


def choose_bars(per_size: dict[int, dict[str, np.ndarray]], max_wrong: float,
                cfg: SizeRuleConfig = SizeRuleConfig()) -> dict | None:
    """The (min_evidence, min_lead) that identify the most member clips, averaged over library sizes,
    while at every size ``cfg.target_unknown`` of outsider clips are "unknown" and at most ``max_wrong``
    of member clips get another song.

    Parameters
    ----------
    per_size : library size → arrays [shape=(clips,)] of one clip length: ``member``, ``right`` (the
        first candidate is the clip's song), ``evidence`` (the first candidate's) and ``lead`` (over the
        next verified candidate); clips without any candidate have evidence -inf.
    """
    pooled = np.concatenate([a["evidence"][~a["member"]] for a in per_size.values()])
    pooled = pooled[np.isfinite(pooled)]
    if len(pooled) == 0:
        return None
    bars = np.unique(np.round(np.quantile(pooled, np.linspace(0, 1, cfg.evidence_quantiles)), 4))
    best = None
    for min_lead in cfg.leads:
        ok = np.ones(len(bars), dtype=bool)
        hits = np.zeros(len(bars))
        for a in per_size.values():
            accepted = (a["evidence"][None] >= bars[:, None]) & (a["lead"] >= min_lead)[None]
            member = a["member"]
            ok &= 1.0 - accepted[:, ~member].mean(axis=1) >= cfg.target_unknown
            ok &= (accepted & ~a["right"])[:, member].mean(axis=1) <= max_wrong
            hits += (accepted & a["right"])[:, member].mean(axis=1) / len(per_size)
        hits = np.where(ok, hits, -1.0)
        i = int(np.argmax(hits))
        if hits[i] >= 0 and (best is None or hits[i] > best["member_hit_rate"]):
            best = {"min_evidence": float(bars[i]), "min_lead": float(min_lead), "member_hit_rate": round(float(hits[i]), 4)}
    if best is not None:
        best["by_size"] = {n: size_rates(a, best["min_evidence"], best["min_lead"]) for n, a in per_size.items()}
    return best


def size_rates(a: dict[str, np.ndarray], min_evidence: float, min_lead: float) -> dict[str, float]:
    """Member clips right and wrong, outsider clips "unknown", under the bars."""
    return _rates(a, (a["evidence"] >= min_evidence) & (a["lead"] >= min_lead))


def _rates(a: dict[str, np.ndarray], accepted: np.ndarray) -> dict[str, float]:
    member = a["member"]
    return {"right": round(float((accepted & a["right"])[member].mean()), 4),
            "wrong": round(float((accepted & ~a["right"])[member].mean()), 4),
            "unknown": round(float(1.0 - accepted[~member].mean()), 4),
            "members": int(member.sum()), "outsiders": int((~member).sum())}


def choose_size_rule(by_length: dict[float, dict[int, dict[str, np.ndarray]]], patch_seconds: float,
                     cfg: SizeRuleConfig = SizeRuleConfig()) -> dict:
    """Bars for every clip length measured (:func:`choose_bars`): the longest length's become
    ``min_evidence`` and ``min_lead``, the shorter ones ``short_bars`` points, with a last point at
    ``patch_seconds`` holding the long bars (so that bars move smoothly up to a whole patch).

    Raises ValueError when some length has no bars that keep the rates.
    """
    lengths = sorted(by_length)
    chosen = {}
    for seconds in lengths:
        short = seconds < patch_seconds - 0.05
        bars = choose_bars(by_length[seconds], cfg.max_wrong_short if short else cfg.max_wrong, cfg)
        if bars is None:
            raise ValueError(f"no bars keep {cfg.target_unknown:.0%} of {seconds:g}-s outsider clips unknown at every size")
        chosen[seconds] = bars
    long = chosen[lengths[-1]]
    points = [[s, chosen[s]["min_evidence"], chosen[s]["min_lead"]] for s in lengths[:-1]]
    if points:
        points.append([round(patch_seconds, 3), long["min_evidence"], long["min_lead"]])
    return {"min_evidence": long["min_evidence"], "min_lead": long["min_lead"], "short_bars": points,
            "reference_songs": 0, "similarity_slope": 0.0, "by_length": {str(s): chosen[s] for s in lengths},
            "rule": cfg.__dict__ | {"leads": [float(x) for x in cfg.leads]}}


def fit_line(a: dict[str, np.ndarray], C: float = 10.0) -> tuple[float, np.ndarray]:
    """A logistic regression's (bias, weights) over ``features``: the clip's song first (member and
    right) against everything else that has a candidate."""
    from sklearn.linear_model import LogisticRegression

    has = np.isfinite(a["features"]).all(axis=1)
    model = LogisticRegression(C=C, max_iter=5000).fit(a["features"][has], (a["member"] & a["right"])[has])
    return float(model.intercept_[0]), model.coef_[0].astype(np.float64)


def line_scores(a: dict[str, np.ndarray], bias: float, weights: np.ndarray) -> np.ndarray:
    """Each clip's score under the line (>= 0 answers); -inf for clips without a candidate."""
    has = np.isfinite(a["features"]).all(axis=1)
    return np.where(has, bias + np.nan_to_num(a["features"]) @ weights, -np.inf)


def line_rates(a: dict[str, np.ndarray], bias: float, weights: np.ndarray) -> dict[str, float]:
    """Member clips right and wrong, outsider clips "unknown", under the line."""
    return _rates(a, line_scores(a, bias, weights) >= 0.0)


def choose_line(per_size: dict[int, dict[str, np.ndarray]], max_wrong: float,
                cfg: SizeRuleConfig = SizeRuleConfig()) -> dict:
    """The learnt line of one clip length: its direction from a logistic regression over every size's
    clips pooled, its offset the least that keeps, at every size, ``cfg.target_unknown`` of outsider
    clips "unknown" and at most ``max_wrong`` of member clips answered with another song."""
    pooled = {k: np.concatenate([a[k] for a in per_size.values()]) for k in ("features", "member", "right")}
    bias, weights = fit_line(pooled)
    bar = -np.inf  # the score every size's rates allow clips to be answered from
    for a in per_size.values():
        score = line_scores(a, bias, weights)
        outsiders = np.sort(score[~a["member"]])[::-1]
        wrong = np.sort(score[a["member"] & ~a["right"]])[::-1]
        allowed_out = int(math.floor((1.0 - cfg.target_unknown) * len(outsiders) + 1e-9))
        allowed_wrong = int(math.floor(max_wrong * int(a["member"].sum()) + 1e-9))
        for ranked, allowed in ((outsiders, allowed_out), (wrong, allowed_wrong)):
            if allowed < len(ranked):  # halfway between the last clip allowed and the first too many
                above = ranked[allowed - 1] if allowed > 0 and np.isfinite(ranked[allowed - 1]) else ranked[allowed] + 1e-3
                bar = max(bar, float(ranked[allowed] + above) / 2)
    if np.isfinite(bar):  # else nothing binds: the regression's own even odds
        bias -= bar
    rates = {n: line_rates(a, bias, weights) for n, a in per_size.items()}
    return {"bias": round(bias, 5), "weights": [round(float(w), 5) for w in weights],
            "member_hit_rate": round(float(np.mean([r["right"] for r in rates.values()])), 4), "by_size": rates}


def choose_score_rule(by_length: dict[float, dict[int, dict[str, np.ndarray]]], patch_seconds: float,
                      cfg: SizeRuleConfig = SizeRuleConfig()) -> dict:
    """``VoteConfig.score_rule`` points, one learnt line per clip length measured (:func:`choose_line`);
    clips shorter than a patch may answer ``cfg.max_wrong_short`` of member clips wrongly."""
    chosen = {s: choose_line(by_length[s], cfg.max_wrong_short if s < patch_seconds - 0.05 else cfg.max_wrong, cfg)
              for s in sorted(by_length)}
    return {"score_rule": [[s, c["bias"], *c["weights"]] for s, c in chosen.items()],
            "by_length": {str(s): c for s, c in chosen.items()}}
