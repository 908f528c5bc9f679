"""Progress of a long job: a bar on a terminal; elsewhere (a log file, a pipe, a CI job) a line on
stderr every few seconds with the items done, the speed and the time left.

Answers and messages printed through :meth:`Progress.print` do not tear the bar.
"""
from __future__ import annotations

import os
import sys
import time

EVERY_S_VARIABLE = "TUNEPRINT_PROGRESS_EVERY_S"  # seconds between lines when not on a terminal
DEFAULT_EVERY_S = 10.0


class Progress:
    """Counts ``total`` items of ``unit`` (files, clips, songs) done by a job called ``desc``.

    Parameters
    ----------
    total : items the job will do
    desc : what the job is doing, e.g. "adding"
    unit : the item's name, singular
    every_s : seconds between lines when not on a terminal (default: $TUNEPRINT_PROGRESS_EVERY_S or 10);
        a job shorter than that prints no progress line at all
    """

    def __init__(self, total: int, *, desc: str, unit: str = "file", every_s: float | None = None, stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream or sys.stderr
        self.every_s = every_s if every_s is not None else _every_s_from_env()
        self.done, self.audio_s = 0, 0.0
        self.started = self._last_line = time.perf_counter()
        self._lines_at: int | None = None  # items done when the last line was printed
        self._bar = None
        if _is_terminal(self.stream):
            from tqdm import tqdm

            # leave=False: the bar goes when the job ends; the command's own summary line stays
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=False)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, *, audio_s: float = 0.0) -> None:
        """``n`` more items done, holding ``audio_s`` seconds of audio (shown as speed against real time)."""
        self.done += n
        self.audio_s += audio_s
        now = time.perf_counter()
        if self._bar is not None:
            if self.audio_s:
                self._bar.set_postfix_str(f"{self._realtime(now):.0f}× real time", refresh=False)
            self._bar.update(n)
        elif now - self._last_line >= self.every_s:
            self._line(now)

    def print(self, line: str, file=None) -> None:
        """Print an answer (stdout by default) or a message (``file=sys.stderr``) above the bar."""
        file = file or sys.stdout
        if self._bar is not None:
            self._bar.write(line, file=file)
        else:
            print(line, file=file, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines_at is not None and self._lines_at != self.done:
            self._line(time.perf_counter())

    # -- lines ----------------------------------------------------------------------------
    def _line(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        parts = [f"{self.done}/{self.total} {self.unit}s" + (f" ({self.done / self.total:.0%})" if self.total else ""),
                 f"{rate:.2f} {self.unit}s/s" if rate < 10 else f"{rate:.0f} {self.unit}s/s"]
        if self.audio_s:
            parts.append(f"{self._realtime(now):.0f}× real time")
        if self.done < self.total and rate > 0:
            parts.append(f"ETA {_hms((self.total - self.done) / rate)}")
        else:
            parts.append(f"took {_hms(elapsed)}")
        print(f"tuneprint: {self.desc}: {', '.join(parts)}", file=self.stream, flush=True)
        self._last_line, self._lines_at = now, self.done

    def _realtime(self, now: float) -> float:
        return self.audio_s / max(now - self.started, 1e-9)


def _every_s_from_env() -> float:
    try:
        return max(0.0, float(os.environ.get(EVERY_S_VARIABLE, DEFAULT_EVERY_S)))
    except ValueError:
        return DEFAULT_EVERY_S


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
