"""What the library answers, and the JSON shapes the command line and the HTTP API print.

Confidence: one number in [0, 1] for people, next to the raw figures. It places a song's evidence
(similarity plus the weighted verified share; similarity alone where the library does not verify)
against the library's "unknown" bar: 0.5 is the bar itself, 1 a perfect match (the same audio),
0 no evidence at all, linear in between on either side. A clip is answered with its first
candidate when that reaches the bar (and, in a library without verification, its votes are not
split between songs). Under a learnt line (``VoteConfig.score_rule``) it is the logistic of the
song's score against the best other candidate: 0.5 on the line again, towards 1 far above it.
A song found by its landmarks (``by`` "landmarks": the embeddings left the clip "unknown") has
confidence 0.5 at the landmark bar, rising towards 1 with the clip's pairs found at its offset
(index/landmarks.confidence).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tuneprint.index.catalog import Song
from tuneprint.index.landmarks import LandmarkMatch
from tuneprint.index.vote import SongVote, VoteConfig, by_line, decision_score

NOT_MUSIC = "not_music"  # the reason of an answer withheld because the music gate says the clip is not music
TOO_SHORT = "too_short"  # the reason of "unknown" for a clip shorter than the features' min_clip_seconds


def confidence(vote: SongVote, cfg: VoteConfig, clip_s: float | None = None, others: list[SongVote] = ()) -> float:
    """``vote``'s evidence mapped to [0, 1] with the "unknown" bar at 0.5 (see the module's docstring);
    ``others``, the clip's other candidates, matter under a learnt line."""
    if by_line(vote, cfg):
        return 1.0 / (1.0 + math.exp(-decision_score([vote, *others], cfg, clip_s)))
    if cfg.verifies and vote.verified is not None:
        evidence, bar, perfect = vote.evidence(cfg.verify_weight), cfg.bars_for(vote.patches, clip_s)[0], 1.0 + cfg.verify_weight
    else:
        evidence, bar, perfect = vote.similarity, cfg.min_similarity_for(vote.patches), 1.0
    if evidence >= bar:
        above = (evidence - bar) / (perfect - bar) if perfect > bar else 1.0
        return float(min(1.0, 0.5 + 0.5 * above))
    return float(max(0.0, 0.5 * evidence / bar)) if bar > 0 else 0.0


@dataclass(frozen=True)
class FileResult:
    path: str
    status: str  # "added", "duplicate" or "failed"
    song_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Match:
    song: Song
    vote: SongVote
    confidence: float
    by: str = "embedding"  # what found the song: "embedding" (the vote of its patches) or "landmarks"
    landmarks: LandmarkMatch | None = None  # the clip's peak pairs found in the song, where landmarks answered

    def to_dict(self) -> dict:
        return {"song_id": self.song.song_id, "path": self.song.path, "title": self.song.title,
                "artist": self.song.artist, "offset_s": round(self.vote.offset_s, 2),
                "confidence": round(self.confidence, 4), "score": round(self.vote.score, 4),
                "similarity": round(self.vote.similarity, 4), "votes": self.vote.votes,
                "labels": list(self.song.labels), "verified": _rounded(self.vote.verified), "by": self.by,
                "landmarks": None if self.landmarks is None else
                {"aligned": self.landmarks.aligned, "pairs": self.landmarks.pairs}}

    def candidate_dict(self) -> dict:
        return {"song_id": self.song.song_id, "path": self.song.path, "title": self.song.title,
                "confidence": round(self.confidence, 4), "score": round(self.vote.score, 4),
                "similarity": round(self.vote.similarity, 4), "offset_s": round(self.vote.offset_s, 2),
                "verified": _rounded(self.vote.verified)}


@dataclass(frozen=True)
class Identification:
    query: str
    match: Match | None
    candidates: list[Match]
    reason: str | None = None  # why there is no match: "no_match", "ambiguous", TOO_SHORT or NOT_MUSIC; None when matched
    clip_s: float | None = None  # seconds of audio in the clip
    music: bool | None = None  # the music gate's verdict (server/gate.py); None where no gate fits the encoder

    def to_dict(self) -> dict:
        return {"query": self.query, "match": self.match.to_dict() if self.match else None,
                "candidates": [c.candidate_dict() for c in self.candidates],
                "reason": self.reason, "clip_s": None if self.clip_s is None else round(self.clip_s, 2),
                "music": self.music}

    def judged(self, music: bool | None) -> "Identification":
        """This answer with the gate's verdict. A clip the gate calls non-music and that matches no
        song is "not_music" rather than "no_match". A match stands: the spectrogram check found the
        recording in the library (which may hold sounds added with --allow-non-music), which the gate,
        wrong on a few % of real music clips, cannot overrule (docs/BENCHMARKS.md, "Music / non-music gate")."""
        if music is False and self.match is None:
            return replace(self, reason=NOT_MUSIC, music=False)
        return replace(self, music=music)


@dataclass(frozen=True)
class Neighbour:
    song: Song
    # by style: cosine similarity of the two style vectors (1 = same style); by fingerprint: mean over
    # query patches of the best cosine similarity to this song
    score: float
    shared_labels: tuple[str, ...] = ()  # labels and tags this track shares with the query track

    def to_dict(self) -> dict:
        return {"song_id": self.song.song_id, "path": self.song.path, "title": self.song.title,
                "score": round(self.score, 4), "labels": list(self.song.labels), "tags": list(self.song.tags),
                "shared_labels": list(self.shared_labels)}


@dataclass(frozen=True)
class SimilarAnswer:
    """Tracks nearest to a clip or a stored track; unpacks as ``query, neighbours``."""

    query: str
    neighbours: list[Neighbour]
    music: bool | None = None  # the gate's verdict on a clip; None for a stored track, or where no gate fits
    reason: str | None = None  # NOT_MUSIC when the clip is not music (then no neighbours are given)
    by: str = "style"  # what ranked them: "style" (the style index) or "fingerprint" (no style head fits)

    def __iter__(self):
        return iter((self.query, self.neighbours))

    def to_dict(self) -> dict:
        return {"query": self.query, "neighbours": [n.to_dict() for n in self.neighbours], "music": self.music,
                "reason": self.reason, "by": self.by}

    def judged(self, music: bool | None) -> "SimilarAnswer":
        if music is False:
            return replace(self, neighbours=[], music=False, reason=NOT_MUSIC)
        return replace(self, music=music)


@dataclass(frozen=True)
class LabelAnswer:
    query: str
    label: str | None
    top: list[tuple[str, float]]
    reason: str | None = None  # "no_clear_label" when no label won enough of the vote
    model: str = "neighbours"  # what answered: "neighbours" (their label vote) or "head" (the trained classifier)
    music: bool | None = None  # the music gate's verdict; None where no gate fits the encoder
    by: str | None = None  # the neighbours' vote: "style" (nearest tracks in style) or "fingerprint"

    def to_dict(self) -> dict:
        return {"query": self.query, "label": self.label, "top": [[lab, round(s, 4)] for lab, s in self.top],
                "reason": self.reason, "model": self.model, "music": self.music, "by": self.by}

    def judged(self, music: bool | None) -> "LabelAnswer":
        """This answer with the gate's verdict: a clip that is not music gets no label (the vote
        is still listed); a steady sound keeps its "no_clear_label"."""
        if music is False and self.reason != "no_clear_label":
            return replace(self, label=None, reason=NOT_MUSIC, music=False)
        return replace(self, music=music)


@dataclass(frozen=True)
class Stretch:
    """A stretch of a long recording (server/monitor.py): one song playing, from ``offset_s`` in it,
    or (``song`` None) nothing the library knows. Consecutive stretches tile the recording."""

    recording: str
    start_s: float
    end_s: float
    song: Song | None
    offset_s: float | None = None  # where in the song the stretch starts
    score: float | None = None  # mean confidence of the windows that named this song here (0.5 = the "unknown" bar)
    windows: int = 0  # windows of the recording answered in this stretch
    agreeing: int = 0  # of those, the ones that named this song at this offset (or nothing, in a null stretch)

    def to_dict(self) -> dict:
        match = None if self.song is None else {
            "song_id": self.song.song_id, "path": self.song.path, "title": self.song.title,
            "artist": self.song.artist, "offset_s": round(self.offset_s or 0.0, 2), "score": _rounded(self.score),
            "agreement": round(self.agreeing / self.windows, 4) if self.windows else None}
        return {"recording": self.recording, "start_s": round(self.start_s, 2), "end_s": round(self.end_s, 2),
                "match": match, "windows": self.windows}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
