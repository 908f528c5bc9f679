"""k-nearest-neighbour voting (the design's majority vote, docs/ARCHITECTURE.md): neighbours of every query patch vote for their
song (or its labels); votes are summed over the whole clip and the majority wins.

Song votes can be weighted by similarity: each query patch hands out one vote, split
over its k neighbours by a softmax of their similarities at ``temperature``. A trained
fingerprint puts only the 2–3 stored patches that overlap the query's moment close to it,
while a song with many merely similar-sounding patches fills the rest of the k slots; plain
counting lets that song win, similarity weighting does not. ``temperature=None`` is the
design's plain count.

Pure functions over arrays: the neighbour lists come from the index, the song ids, offsets
and labels from the catalog.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, replace

import numpy as np


@dataclass(frozen=True)
class VoteConfig:
    k: int = 10  # neighbours per query patch (the design's report found 10 the most stable)
    top: int = 2  # candidates and labels reported
    min_share: float = 0.2  # below this share of all votes the answer is "unknown"
    min_similarity: float = 0.0  # below this median best cosine similarity the answer is "unknown"
    min_margin: float = 0.0  # below this mean lead over the next song's similarity the answer is "unknown"
    temperature: float | None = 0.02  # softmax temperature of similarity-weighted votes; None = plain count
    offset_bin_s: float = 1.0  # implied song offsets closer than this agree with each other
    # The best impostor among N songs rises about linearly in ln N (extreme values of a light
    # tail), so a fixed similarity threshold lets more strangers in as a library grows. With
    # reference_songs > 0, min_similarity holds up to a library of that many songs and rises by
    # similarity_slope per e-fold beyond (scripts/calibrate.py measures both). It never drops
    # below the calibrated value: smaller libraries keep the threshold that was validated.
    reference_songs: int = 0
    similarity_slope: float = 0.0
    # A longer clip brings more evidence: the best song of a clip from outside the library is a
    # typical match to fewer of its patches, so its median similarity falls with the number of
    # query patches, and the same "unknown" rate holds at a lower threshold. (patches, threshold)
    # points calibrated on clips of several lengths (scripts/calibrate.py --long-clip-seconds);
    # the first is min_similarity's own. Between points the threshold is linear in ln(patches);
    # beyond the last it stays there. Empty: min_similarity at every length.
    similarity_by_patches: tuple = ()
    # Spectral verification (index/verify.py): the vote's top ``verify_top`` songs are checked against
    # their own spectrograms; each gets evidence = similarity + verify_weight × the share of the clip
    # it explains, the song with the most evidence answers, and below ``min_evidence`` the answer is
    # "unknown" (the share and margin tests then do not apply). 0 = off: the tests above alone.
    # scripts/calibrate.py chooses the three on validation songs.
    verify_top: int = 0
    verify_weight: float = 0.0
    min_evidence: float = 0.0
    # "Unknown" judged against the clip's own impostors (score normalisation): the answer's evidence
    # must lead the next verified song's by ``min_lead``. The best of N impostors rises with the size
    # of a library, and a fixed bar on the evidence alone lets more strangers in as it grows; a clip
    # of a stored song stands out from its runner-up at any size, a stranger's best song does not.
    min_lead: float = 0.0
    # Clips shorter than a patch (answered from partial patches, encoder/query_encoder.py) have bars of their
    # own: (clip seconds, min_evidence, min_lead) points, linear in between; clips as long as the last
    # point or longer use the bars above. Empty: the bars above at every length.
    short_bars: tuple = ()
    # A clip the query encoder (encoder/query_encoder.py) leaves "unknown" is searched again with its
    # own fingerprint, and answered that way only when it is nearly the same recording (similarity at
    # least this, and the bars above): the query encoder learnt music, and a stored jingle or sound
    # effect is still found. The same bars alone let strangers in (docs/BENCHMARKS.md).
    copy_similarity: float = 0.9
    # The bars above as one learnt line instead (index/calibration.choose_score_rule): the clip is
    # answered when bias + weights · decision_features(votes) >= 0, so that a winner far ahead of its
    # runner-up needs less evidence and one barely ahead needs more; two separate bars cut that
    # trade-off square. (clip seconds, bias, *weights) points, linear in between, the last for longer
    # clips. Empty: the bars.
    score_rule: tuple = ()
    # Landmarks (encoder/landmarks.py, index/landmarks.py): a clip the embeddings leave "unknown" is
    # answered by the song that holds at least ``landmark_min_aligned`` of the clip's peak pairs at one
    # offset, and ``landmark_min_ratio`` times as many as any other song. 0: landmarks are not searched.
    landmark_min_aligned: int = 0
    landmark_min_ratio: float = 2.0

    def __post_init__(self):  # JSON gives lists; keep one form so that settings compare equal
        points = tuple((int(n), float(t)) for n, t in self.similarity_by_patches)
        object.__setattr__(self, "similarity_by_patches", points)
        object.__setattr__(self, "short_bars", tuple(tuple(float(x) for x in p) for p in self.short_bars))
        object.__setattr__(self, "score_rule", tuple(tuple(float(x) for x in p) for p in self.score_rule))

    def to_dict(self) -> dict:
        return asdict(self)

    def min_similarity_for(self, patches: int) -> float:
        """``min_similarity`` for a clip of ``patches`` query patches (lower for long clips, when calibrated)."""
        if len(self.similarity_by_patches) < 2:
            return self.min_similarity
        counts, thresholds = zip(*sorted((int(n), float(t)) for n, t in self.similarity_by_patches))
        at = float(np.interp(math.log(max(patches, 1)), np.log(counts), thresholds))
        return self.min_similarity + min(0.0, at - thresholds[0])  # never above the calibrated short-clip bar

    def min_evidence_for(self, patches: int) -> float:
        """``min_evidence`` for a clip of ``patches`` query patches: lowered for long clips by as much
        as ``min_similarity`` is (the similarity part of the evidence is what falls for outsiders)."""
        return self.min_evidence + (self.min_similarity_for(patches) - self.min_similarity)

    def bars_for(self, patches: int, clip_s: float | None = None) -> tuple[float, float]:
        """(min_evidence, min_lead) of a clip of ``patches`` query patches and ``clip_s`` seconds."""
        if clip_s is not None and self.short_bars and clip_s < self.short_bars[-1][0]:
            seconds, evidence, lead = (np.array(c) for c in zip(*self.short_bars))
            return float(np.interp(clip_s, seconds, evidence)), float(np.interp(clip_s, seconds, lead))
        return self.min_evidence_for(patches), self.min_lead

    def score_line(self, clip_s: float | None) -> tuple[float, np.ndarray]:
        """(bias, weights) of ``score_rule`` for a clip of ``clip_s`` seconds (None: the longest point's)."""
        points = np.array(self.score_rule, dtype=np.float64)
        if clip_s is None or len(points) == 1:
            line = points[-1, 1:]
        else:
            line = np.array([np.interp(clip_s, points[:, 0], points[:, i]) for i in range(1, points.shape[1])])
        # a rule learnt before the later features (fewer weights) gives them weight 0
        return float(line[0]), np.pad(line[1:], (0, max(0, len(DECISION_FEATURES) - len(line) + 1)))

    @property
    def verifies(self) -> bool:
        return self.verify_top > 0 and self.verify_weight > 0.0

    def for_library(self, n_songs: int) -> "VoteConfig":
        """These settings with ``min_similarity`` raised for a library of ``n_songs`` songs."""
        if self.reference_songs <= 0 or self.similarity_slope <= 0.0 or n_songs <= self.reference_songs:
            return self
        rise = self.similarity_slope * math.log(n_songs / self.reference_songs)
        # The evidence's similarity part rises the same way; the verification part is measured only
        # for the vote's top songs, which the size already picks the best of.
        # a learnt line asks for the same rise of the similarity: its bias falls by the similarity's weight × rise
        lines = tuple((p[0], p[1] - p[2] * rise, *p[2:]) for p in self.score_rule)
        return replace(self, min_similarity=self.min_similarity + rise, score_rule=lines,
                       min_evidence=self.min_evidence + rise if self.verifies else self.min_evidence)


@dataclass(frozen=True)
class SongVote:
    song_id: str
    votes: int
    share: float  # votes / all neighbour votes of the clip
    # median over query patches of the best similarity to this song (0 where none): the median,
    # not the mean, so that a long clip is judged as a typical patch of it, not penalised for the
    # few patches a noise covers; for one or two patches (a 3-s clip) it is the mean
    similarity: float
    offset_s: float  # where in the song the clip starts, from the neighbours' offsets
    aligned: float  # share of this song's votes that agree on that offset
    margin: float = 0.0  # mean over query patches of this song's best similarity minus any other song's
    patches: int = 1  # query patches the clip was cut into
    verified: float | None = None  # share of the clip this song's spectrogram explains (index/verify.py), if checked

    def evidence(self, weight: float) -> float:
        """Similarity plus ``weight`` × the verified share (the similarity alone when not verified)."""
        return self.similarity + weight * (self.verified or 0.0)

    @property
    def score(self) -> float:
        """Raw vote score in [0, 1]: vote share, discounted by how well the votes agree in time (the
        confidence people read is server/answers.confidence)."""
        return self.share * (0.5 + 0.5 * self.aligned)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["score"] = round(self.score, 4)
        return d


def rank_verified(votes: list[SongVote], verified: dict[str, float], cfg: VoteConfig) -> list[SongVote]:
    """The votes with their verification scores; the verified songs first, most evidence first.

    Parameters
    ----------
    verified : song id → share of the clip its spectrogram explains, for the songs that were checked

    When the vote's first song could not be checked (its spectrogram is unavailable), the votes are
    returned as they are: the clip is judged by similarity alone rather than against the others' bonus.
    """
    if not votes or votes[0].song_id not in verified:
        return votes
    checked = [replace(v, verified=verified[v.song_id]) for v in votes if v.song_id in verified]
    checked.sort(key=lambda v: -v.evidence(cfg.verify_weight))
    return checked + [v for v in votes if v.song_id not in verified]


def vote_songs(song_ids: np.ndarray, sims: np.ndarray, offsets_s: np.ndarray, query_offsets_s: np.ndarray,
               cfg: VoteConfig = VoteConfig()) -> list[SongVote]:
    """Count the neighbours' songs over all query patches.

    Parameters
    ----------
    song_ids : np.ndarray [shape=(n, k), dtype=object]
        Song of every neighbour, None for missing neighbours.
    sims : np.ndarray [shape=(n, k)]
        Cosine similarity of every neighbour.
    offsets_s : np.ndarray [shape=(n, k)]
        Offset of every neighbour in its song.
    query_offsets_s : np.ndarray [shape=(n,)]
        Offset of every query patch in the clip.

    Returns
    -------
    votes : list of SongVote, largest (weighted) share first (ties: higher similarity first).
    """
    n, k = song_ids.shape if song_ids.ndim == 2 else (0, 0)
    valid = np.array([[s is not None for s in row] for row in song_ids], dtype=bool).reshape(n, k)
    if not valid.any():
        return []
    weights = vote_weights(sims, valid, cfg.temperature)
    count: dict[str, int] = defaultdict(int)
    weight: dict[str, float] = defaultdict(float)
    best = defaultdict(lambda: np.zeros(n, dtype=np.float64))
    starts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for q, j in zip(*np.nonzero(valid)):
        song = song_ids[q, j]
        count[song] += 1
        weight[song] += weights[q, j]
        best[song][q] = max(best[song][q], float(sims[q, j]))
        starts[song].append((float(offsets_s[q, j]) - float(query_offsets_s[q]), weights[q, j]))
    total = sum(weight.values())
    runner_up = next_song_similarity(best, sims, valid)
    votes = []
    for song, c in count.items():
        implied, w = map(np.array, zip(*starts[song]))
        offset, aligned = consensus_offset(implied, cfg.offset_bin_s, weights=w)
        margin = float((best[song] - runner_up[song]).mean())
        votes.append(SongVote(song, c, weight[song] / total, float(np.median(best[song])), max(0.0, offset), aligned,
                              margin, n))
    votes.sort(key=lambda v: (-v.share, -v.similarity))
    return votes


def next_song_similarity(best: dict[str, np.ndarray], sims: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """For every song, each query patch's best similarity to any *other* song [shape=(n,)].

    This is the ratio test of fingerprinting: a clip of a stored song lies much closer to that
    song than to the next one, a clip of an unknown song lies about as close to several. Songs
    outside a patch's k neighbours lie below its k-th similarity, which bounds them from above.

    Parameters
    ----------
    best : dict of song → np.ndarray [shape=(n,)]
        Each song's best similarity per query patch (0 where it is not among the neighbours).
    """
    songs = list(best)
    table = np.stack([best[song] for song in songs])  # [shape=(songs, n)]
    ranked = np.sort(table, axis=0)
    first = ranked[-1]
    second = ranked[-2] if len(songs) > 1 else np.zeros_like(first)
    top = np.argmax(table, axis=0)
    floor = np.where(valid.any(axis=1), np.min(np.where(valid, sims, np.inf), axis=1), 0.0)
    return {song: np.maximum(np.where(top == i, second, first), floor) for i, song in enumerate(songs)}


def vote_weights(sims: np.ndarray, valid: np.ndarray, temperature: float | None) -> np.ndarray:
    """Weight of every neighbour's vote [shape=(n, k)], 0 for missing neighbours.

    ``temperature=None``: one vote per neighbour (the design's count). Otherwise each query patch
    hands out one vote, split by a softmax of its neighbours' similarities.
    """
    if temperature is None:
        return valid.astype(np.float64)
    logits = np.where(valid, sims.astype(np.float64) / temperature, -np.inf)
    peak = np.max(logits, axis=1, keepdims=True)
    w = np.where(valid, np.exp(logits - np.where(np.isfinite(peak), peak, 0.0)), 0.0)
    rows = w.sum(axis=1, keepdims=True)
    return np.divide(w, rows, out=np.zeros_like(w), where=rows > 0)


def consensus_offset(implied_starts: np.ndarray, bin_s: float, weights: np.ndarray | None = None) -> tuple[float, float]:
    """The offset most neighbours agree on, and the share (of weight) that agrees within ``bin_s``.

    Each neighbour implies a start of the clip in its song (its offset minus the query
    patch's offset). The window of width ``bin_s`` holding the most weight wins; its
    weighted median is the answer.
    """
    if len(implied_starts) == 0:
        return 0.0, 0.0
    w = np.ones(len(implied_starts)) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(implied_starts, kind="stable")
    x, w = np.asarray(implied_starts, dtype=np.float64)[order], w[order]
    cum = np.concatenate([[0.0], np.cumsum(w)])
    ends = np.searchsorted(x, x + bin_s, side="right")
    mass = cum[ends] - cum[:-1]
    i = int(np.argmax(mass))
    xs, ws = x[i : ends[i]], w[i : ends[i]]
    if ws.sum() <= 0 or np.allclose(ws, ws[0]):
        median = np.median(xs)
    else:
        median = xs[np.searchsorted(np.cumsum(ws), ws.sum() / 2)]
    return float(median), float(mass[i] / cum[-1]) if cum[-1] > 0 else 0.0


def lead(votes: list[SongVote], cfg: VoteConfig) -> float:
    """How far the first song's evidence leads the next verified song's (its own when it is alone)."""
    runner_up = next((v for v in votes[1:] if v.verified is not None), None)
    first = votes[0].evidence(cfg.verify_weight)
    return first - runner_up.evidence(cfg.verify_weight) if runner_up is not None else first


DECISION_FEATURES = ("similarity", "verified", "share", "margin", "next_similarity", "next_verified", "aligned")


def decision_features(votes: list[SongVote]) -> np.ndarray:
    """What ``VoteConfig.score_rule`` weighs [shape=(7,)]: the first song's similarity, verified share,
    vote share and margin, the next verified song's similarity and verified share (0 without one), and
    the share of the first song's votes that agree on where in it the clip starts (its patches line up
    in time, as a stranger's chance matches seldom do)."""
    first = votes[0]
    runner_up = next((v for v in votes[1:] if v.verified is not None), None)
    following = (runner_up.similarity, runner_up.verified) if runner_up is not None else (0.0, 0.0)
    return np.array([first.similarity, first.verified or 0.0, first.share, first.margin, *following, first.aligned])


def by_line(vote: SongVote, cfg: VoteConfig) -> bool:
    """Whether ``cfg.score_rule``'s line judges ``vote`` (a verified winner under a verifying rule with
    a line), not the bars."""
    return cfg.verifies and vote.verified is not None and bool(cfg.score_rule)


def decision_score(votes: list[SongVote], cfg: VoteConfig, clip_s: float | None = None) -> float:
    """Where the clip lies from ``cfg.score_rule``'s line: >= 0 is answered. A clip longer than the
    lengths the line was learnt on gets the relief ``similarity_by_patches`` gives its similarity bar."""
    bias, weights = cfg.score_line(clip_s)
    longer = clip_s is None or clip_s > cfg.score_rule[-1][0] + 0.5
    relief = cfg.min_similarity - cfg.min_similarity_for(votes[0].patches) if longer else 0.0
    return float(bias + weights @ decision_features(votes) + weights[0] * relief)


def decide(votes: list[SongVote], cfg: VoteConfig = VoteConfig(), clip_s: float | None = None) -> SongVote | None:
    """The winning song, or None ("not in the library") when the vote is not convincing; ``clip_s``,
    the clip's length, picks the bars of clips shorter than a patch (``cfg.short_bars``)."""
    if not votes:
        return None
    winner = votes[0]
    if by_line(winner, cfg):
        return winner if decision_score(votes, cfg, clip_s) >= 0.0 else None
    if cfg.verifies and winner.verified is not None:
        min_evidence, min_lead = cfg.bars_for(winner.patches, clip_s)
        passes = winner.evidence(cfg.verify_weight) >= min_evidence and lead(votes, cfg) >= min_lead
        return winner if passes else None
    if (winner.share < cfg.min_share or winner.similarity < cfg.min_similarity_for(winner.patches)
            or winner.margin < cfg.min_margin):
        return None
    return winner


def unknown_reason(votes: list[SongVote], cfg: VoteConfig = VoteConfig(), clip_s: float | None = None) -> str:
    """Why :func:`decide` found no answer: "ambiguous" when the best song is close enough but another
    fits about as well (the lead, share or margin test failed), else "no_match"."""
    if not votes:
        return "no_match"
    winner = votes[0]
    if by_line(winner, cfg):  # would it pass without a runner-up?
        alone = [winner] + [replace(v, verified=None) for v in votes[1:]]
        return "ambiguous" if decision_score(alone, cfg, clip_s) >= 0.0 else "no_match"
    if cfg.verifies and winner.verified is not None:
        min_evidence, _ = cfg.bars_for(winner.patches, clip_s)
        return "ambiguous" if winner.evidence(cfg.verify_weight) >= min_evidence else "no_match"
    if winner.similarity >= cfg.min_similarity_for(winner.patches) and (
            winner.share < cfg.min_share or winner.margin < cfg.min_margin):
        return "ambiguous"
    return "no_match"


def vote_labels(song_ids: np.ndarray, labels: dict[str, tuple[str, ...]], *, top: int = 2,
                similarities: np.ndarray | None = None) -> list[tuple[str, float]]:
    """Majority vote of the neighbours' labels; returns the ``top`` labels and their vote share.

    Every neighbour gives one vote, split evenly over its song's labels; unlabelled
    neighbours abstain. Ties go to the label whose voters' ``similarities`` (aligned with
    ``song_ids``) sum higher, then to the label that sorts first.
    """
    tally: dict[str, float] = defaultdict(float)
    weight: dict[str, float] = defaultdict(float)
    sims = np.ravel(similarities) if similarities is not None else np.zeros(np.size(song_ids))
    for song, sim in zip(np.ravel(song_ids), sims):
        song_labels = labels.get(song, ()) if song is not None else ()
        for label in song_labels:
            tally[label] += 1.0 / len(song_labels)
            weight[label] += float(sim)
    total = sum(tally.values())
    if total == 0:
        return []
    ranked = sorted(tally.items(), key=lambda kv: (-kv[1], -weight[kv[0]], kv[0]))
    return [(label, v / total) for label, v in ranked[:top]]
