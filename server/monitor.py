"""Monitoring a long recording (a radio show, a DJ mix, a stream dumped to a file): which songs of
the library play in it, from when to when, and where nothing the library knows plays.

The recording is decoded block by block (:func:`encoder.audio.stream_audio`), so hours of audio
never sit in memory; it is cut into windows of ``window_s`` every ``hop_s``, and each window is
answered by the library's own pipeline (:meth:`Library.embed_clip` +
:meth:`Library.identify_embeddings`). :func:`segment` then joins consecutive windows into runs:

- a window *agrees* with a run when it names the same song at the same place in it (its song
  offset minus its start in the recording within ``anchor_tolerance_s`` of the run's), or when
  both name nothing;
- a new run opens only when ``min_windows`` consecutive windows agree with each other on a song,
  or the windows of ``gap_s`` in a row name nothing, so a single stray answer never splits a
  stretch;
- the windows that agreed with nothing between two runs ("strays": a crossfade, a wrong answer)
  are shared out between them; ``gap_s`` of them or more are a "no match" run of their own (a
  stretch of music the library does not know answers "nothing" or stray songs that disagree), as
  are ``max_pending_s`` of them in a row while no run opens.

Each window stands for the ``hop_s`` around its centre, so runs tile the recording and a boundary
falls between the centres of the last window of one run and the first of the next: where a window
hears more of the next song than of the last (within a crossfade, about its middle). Within a
crossfade a window often hears a song just below the "unknown" bar, so a song run's edges then move
over the neighbouring windows that list it, at its place, among their candidates.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import numpy as np

from tuneprint.encoder.audio import stream_audio
from tuneprint.errors import SilentAudioError, TooShortError

from .answers import Stretch

if TYPE_CHECKING:
    from .library import Library

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorConfig:
    window_s: float = 4.0  # audio answered at a time (more than one patch of ≈2.97 s: a few patches vote)
    hop_s: float = 1.0  # between window starts: the resolution of the boundaries
    min_windows: int = 3  # consecutive agreeing windows that open a song's stretch (2 let crossfades open wrong ones)
    gap_s: float = 3.0  # this much of the recording (in windows) naming nothing is a "no match" stretch
    max_pending_s: float = 10.0  # windows agreeing with nothing, in a row, before they are one
    anchor_tolerance_s: float = 1.5  # how far a window's implied song start may stray within one stretch
    block_s: float = 30.0  # seconds decoded at a time

    def __post_init__(self):
        if not 0 < self.hop_s <= self.window_s:
            raise ValueError(f"the hop ({self.hop_s} s) must be positive and at most the window ({self.window_s} s)")
        if self.min_windows < 1 or self.gap_s <= 0 or self.max_pending_s < self.gap_s:
            raise ValueError("min_windows must be at least 1, gap_s positive and max_pending_s at least gap_s")

    def windows(self, seconds: float) -> int:
        """How many windows (at least 1) stand for ``seconds`` of the recording."""
        return max(1, round(seconds / self.hop_s))


@dataclass(frozen=True)
class WindowAnswer:
    """One window's answer: the song it names (None: none), and where that song started."""

    start_s: float  # the window's start in the recording
    song_id: str | None
    anchor_s: float | None = None  # the song's offset minus the window's start: where the song's 0 falls
    confidence: float = 0.0
    near: tuple[tuple[str, float], ...] = ()  # every candidate's (song id, anchor), answered or not

    def hears(self, song_id: str, anchor_s: float, tolerance_s: float) -> bool:
        """Whether a candidate of this window, even one below the "unknown" bar, is that song there."""
        return any(s == song_id and abs(a - anchor_s) <= tolerance_s for s, a in self.near)


@dataclass
class Run:
    """Consecutive windows of one stretch (window indices ``first``..``last``)."""

    song_id: str | None
    first: int
    last: int
    anchor_s: float | None  # the song's 0 in the recording, from the windows that opened the run
    agreeing: int = 0
    confidence_sum: float = 0.0
    final: bool = False  # the recording's last run
    _latest_anchor: float | None = field(default=None, repr=False)  # follows a slow drift (tempo)

    @property
    def windows(self) -> int:
        return self.last - self.first + 1

    @property
    def score(self) -> float | None:
        return self.confidence_sum / self.agreeing if self.song_id is not None and self.agreeing else None


def agree(a: WindowAnswer, b: WindowAnswer, tolerance_s: float) -> bool:
    """Same song at the same place in it, or both nothing."""
    if a.song_id != b.song_id:
        return False
    return a.song_id is None or abs(a.anchor_s - b.anchor_s) <= tolerance_s


def segment(answers: Iterable[WindowAnswer], cfg: MonitorConfig = MonitorConfig()) -> Iterator[Run]:
    """Join consecutive window answers into runs (see the module's docstring); each run is yielded
    as soon as the next one opens, so at most ``max_pending_s`` of answers are held."""
    gap = cfg.windows(cfg.gap_s)
    most = max(cfg.windows(cfg.max_pending_s), gap, cfg.min_windows)
    cur: Run | None = None
    pending: list[tuple[int, WindowAnswer]] = []
    recent: dict[int, WindowAnswer] = {}  # the last answers, for the edges of runs still held
    i = -1
    for i, w in enumerate(answers):
        recent[i] = w
        recent.pop(i - 2 * most - cfg.min_windows, None)
        if cur is not None and _extends(cur, w, cfg.anchor_tolerance_s):
            cur.last = i  # strays in between stay inside the stretch
            _count(cur, w)
            pending = []
            continue
        pending.append((i, w))
        need = cfg.min_windows if w.song_id is not None else gap
        tail = [x for _, x in pending[-need:]]
        if len(tail) == need and all(agree(tail[0], x, cfg.anchor_tolerance_s) for x in tail[1:]):
            opened, strays = _open(pending[-need:]), pending[:-need]
        elif len(pending) >= most:  # answers that settle on nothing
            opened, strays = _nothing(pending), []
        else:
            continue
        runs = [cur] if cur is not None else []
        if len(strays) >= gap:
            runs.append(_nothing(strays))
        elif len(strays) >= 2 and cur is not None:  # shared out: the first half to the run that closes
            cur.last = strays[len(strays) // 2 - 1][0]
        if cur is None:  # the recording's first run starts with it
            (runs or [opened])[0].first = 0
        *closed, cur = _settled(_tiled([*runs, opened]), recent, cfg.anchor_tolerance_s)
        yield from closed
        pending = []
    if i < 0:
        return
    runs = [cur] if cur is not None else []
    if len(pending) >= gap:
        runs.append(_nothing(pending))
    elif cur is None:  # too few windows to confirm anything: the first one speaks for them
        runs.append(_open(pending[:1]))
    runs = _tiled(runs)
    runs[-1].last, runs[-1].final = i, True
    yield from _settled(runs, recent, cfg.anchor_tolerance_s)


def _tiled(runs: list[Run]) -> list[Run]:
    """Consecutive runs, neighbouring "no match" runs joined, each starting where the one before ends."""
    out = runs[:1]
    for run in runs[1:]:
        if run.song_id is None and out[-1].song_id is None:
            out[-1].last, out[-1].agreeing = max(out[-1].last, run.last), out[-1].agreeing + run.agreeing
        else:
            run.first = out[-1].last + 1
            out.append(run)
    return out


def _settled(runs: list[Run], recent: dict[int, WindowAnswer], tolerance_s: float) -> list[Run]:
    """Each song run's edges moved out over the neighbouring windows (still at hand) that hear it,
    at its place, among their candidates: within a crossfade a window often hears the song just
    below the "unknown" bar. Every run keeps at least one window."""
    for left, right in zip(runs, runs[1:]):
        while left.song_id is not None and right.windows > 1 and _leaves(recent.get(right.first), right, left,
                                                                           left._latest_anchor, tolerance_s):
            _hand_over(recent[right.first], right, left, left._latest_anchor, tolerance_s)
            right.first, left.last = right.first + 1, left.last + 1
        while right.song_id is not None and left.windows > 1 and _leaves(recent.get(left.last), left, right,
                                                                           right.anchor_s, tolerance_s):
            _hand_over(recent[left.last], left, right, right.anchor_s, tolerance_s)
            left.last, right.first = left.last - 1, right.first - 1
    return runs


def _leaves(w: WindowAnswer | None, owner: Run, to: Run, anchor_s: float, tolerance_s: float) -> bool:
    """Whether ``w`` belongs to ``to`` rather than ``owner``: it hears ``to``'s song at ``anchor_s``
    and does not name ``owner``'s."""
    if w is None or (owner.song_id is not None and w.song_id == owner.song_id):
        return False
    return w.hears(to.song_id, anchor_s, tolerance_s)


def _hand_over(w: WindowAnswer, owner: Run, to: Run, anchor_s: float, tolerance_s: float) -> None:
    """Move ``w``'s count from ``owner`` to ``to`` (the caller moves the edge)."""
    if owner.song_id is None and w.song_id is None:
        owner.agreeing -= 1
    if w.song_id == to.song_id and abs(w.anchor_s - anchor_s) <= tolerance_s:
        _count(to, w)


def _nothing(windows: list[tuple[int, WindowAnswer]]) -> Run:
    return Run(None, windows[0][0], windows[-1][0], None, agreeing=sum(w.song_id is None for _, w in windows))


def _open(windows: list[tuple[int, WindowAnswer]]) -> Run:
    first = windows[0][1]
    anchors = [w.anchor_s for _, w in windows if w.anchor_s is not None]
    anchor = float(np.median(anchors)) if first.song_id is not None and anchors else None
    run = Run(first.song_id, windows[0][0], windows[-1][0], anchor, _latest_anchor=anchor)
    for _, w in windows:
        _count(run, w)
    return run


def _extends(run: Run, w: WindowAnswer, tolerance_s: float) -> bool:
    if run.song_id != w.song_id:
        return False
    return run.song_id is None or abs(w.anchor_s - run._latest_anchor) <= tolerance_s


def _count(run: Run, w: WindowAnswer) -> None:
    run.agreeing += 1
    run.confidence_sum += w.confidence
    if w.anchor_s is not None:
        run._latest_anchor = w.anchor_s


# -- the recording --------------------------------------------------------------------------------
def monitor(lib: "Library", recording: str | os.PathLike | bytes, cfg: MonitorConfig = MonitorConfig(), *,
            progress: Callable[[float], None] | None = None, name: str | None = None) -> Iterator[Stretch]:
    """Every stretch of ``recording``: a song of ``lib`` (where in it, how sure) or no match.

    ``progress`` is called after each window with the seconds of the recording walked so far.

    Raises
    ------
    UnreadableAudioError, SampleRateError
        The recording cannot be decoded (before the first stretch, or part of the way through).
    TooShortError
        Less audio than ``features.min_clip_seconds``.
    """
    name = name or (str(Path(recording).resolve()) if not isinstance(recording, (bytes, bytearray)) else "upload")
    sr = lib.features.sample_rate
    cutter = _Windows(cfg.window_s, cfg.hop_s, sr, least_s=lib.features.min_clip_seconds, name=name)

    def answers() -> Iterator[WindowAnswer]:
        for start, samples in cutter.cut(stream_audio(recording, sr=sr, block_s=cfg.block_s)):
            yield answer_window(lib, samples, start / sr)
            if progress is not None:
                progress((start + len(samples)) / sr)

    boundary = 0.0
    for run in segment(answers(), cfg):
        # a window stands for the hop around its centre; the last run reaches the recording's end
        end = cutter.seen / sr if run.final else run.last * cfg.hop_s + cfg.window_s / 2 + cfg.hop_s / 2
        song = lib.song(run.song_id) if run.song_id is not None else None
        offset = max(0.0, run.anchor_s + boundary) if run.anchor_s is not None else None
        yield Stretch(name, boundary, max(end, boundary), song, offset, run.score, run.windows, run.agreeing)
        boundary = end


def answer_window(lib: "Library", samples: np.ndarray, start_s: float) -> WindowAnswer:
    """The library's answer for one window, placed in the recording; silence names nothing."""
    try:
        # without landmarks: a window holding a second of a song has pairs enough to be named after it,
        # and stretches spread into their neighbours (docs/BENCHMARKS.md, "Since 2026-12-06")
        answer = lib.identify_embeddings(lib.embed_clip(samples, landmarks=False), name="window")
    except (SilentAudioError, TooShortError):
        return WindowAnswer(start_s, None)
    near = tuple((c.song.song_id, c.vote.offset_s - start_s) for c in answer.candidates)
    m = answer.match
    if m is None:
        return WindowAnswer(start_s, None, near=near)
    return WindowAnswer(start_s, m.song.song_id, m.vote.offset_s - start_s, m.confidence, near)


class _Windows:
    """Cuts windows of ``window_s`` every ``hop_s`` from a stream of blocks at ``sr``, holding at
    most one window and one block; a stream shorter than a window gives one window of what it has
    (at least ``least_s``)."""

    def __init__(self, window_s: float, hop_s: float, sr: int, least_s: float = 0.0, name: str = "the recording"):
        self.window, self.hop, self.least = round(window_s * sr), round(hop_s * sr), round(least_s * sr)
        self.sr, self.name = sr, name
        self.seen = 0  # samples of the stream read so far (all of it once :meth:`cut` ends)

    def cut(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
        """(first sample, samples) of every window."""
        buffer, buffer_start, next_start = np.zeros(0, np.float32), 0, 0
        for block in blocks:
            self.seen += len(block)
            buffer = np.concatenate([buffer, block])
            while next_start + self.window <= buffer_start + len(buffer):
                i = next_start - buffer_start
                yield next_start, buffer[i : i + self.window]
                next_start += self.hop
            drop = min(next_start - buffer_start, len(buffer))
            buffer, buffer_start = buffer[drop:], buffer_start + drop
        if next_start == 0:  # shorter than a window
            if self.seen < self.least:
                raise TooShortError(f"{self.name}: {self.seen / self.sr:.2f} s of audio, "
                                    f"at least {self.least / self.sr:.1f} s needed")
            yield 0, buffer
