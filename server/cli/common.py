"""What every command shares: exit codes, the common options, messages that name the file once.

Light on purpose: ``tuneprint --help`` imports this module, so nothing here imports the encoder,
the index or any numerical package.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tuneprint.errors import AudioError, TuneprintError

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_LIBRARY = 0, 1, 2, 3


class UsageError(Exception):
    """The command was given something it cannot use (exit status 2); the text says what."""


def add_command(sub: argparse._SubParsersAction, name: str, help: str, run) -> argparse.ArgumentParser:
    """A sub-command with the options every command has (--library, --verbose); ``run(args)``
    does its work and returns the exit status."""
    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("--library", "-l", required=True, type=Path, help="library folder")
    p.add_argument("--verbose", "-v", action="store_true", default=None, help="log what happens")
    p.set_defaults(run=run)
    return p


def exit_status(error: TuneprintError) -> int:
    """Bad audio spoils one input (the others are still answered); anything else, the library."""
    return EXIT_PARTIAL if isinstance(error, AudioError) else EXIT_LIBRARY


def about(path: str | os.PathLike, error: BaseException | str) -> str:
    """``PATH: cause``, naming the file once whether or not the error's text already does."""
    text = str(error)
    return text if str(path) in text else f"{path}: {text}"


def print_error(message: str, command: str | None = None) -> None:
    print(f"tuneprint{' ' + command if command else ''}: error: {message}", file=sys.stderr, flush=True)


def clock(seconds: float) -> str:
    """Seconds as m:ss.s."""
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m)}:{s:04.1f}"


def percent(share: float) -> str:
    return f"{share:.0%}"
