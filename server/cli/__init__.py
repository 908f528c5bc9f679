"""`tuneprint` command line: thin commands over :class:`tuneprint.server.library.Library`.

Each module adds its commands to the parser; the heavy packages (torch, faiss, scipy, the
evaluation, the web framework) are imported inside the command that runs, so ``--help``,
``stats`` and ``tracks`` start at once.

- :mod:`.library_commands`: add, remove, reindex, stats, tracks, doctor
- :mod:`.query_commands`: identify, similar, genre (files or folders; ``--out`` report; summary)
- :mod:`.monitor_command`: monitor (every stretch of long recordings: a song, or no match)
- :mod:`.classify_command`: classify train / classify predict, label (a track's tags and labels)
- :mod:`.train_command`, :mod:`.evaluate_command`, :mod:`.serve_command`
- :mod:`.common` (exit codes, messages), :mod:`.output` (``--out`` files), :mod:`.progress`

Exit status: 0 all went well; 1 some inputs failed (reported on stderr, the rest answered);
2 bad usage; 3 the library could not be opened or changed.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from tuneprint import __version__
from tuneprint.errors import TuneprintError

from . import (classify_command, evaluate_command, library_commands, monitor_command, query_commands, serve_command,
               train_command)
from .common import EXIT_LIBRARY, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UsageError, exit_status, print_error

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "EXIT_LIBRARY"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.run(args)
    except UsageError as e:
        print_error(str(e), args.command)
        return EXIT_USAGE
    except TuneprintError as e:
        print_error(str(e))
        return exit_status(e)
    except KeyboardInterrupt:
        print("tuneprint: interrupted; the library keeps every batch that was committed before", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tuneprint tracks | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes stdout
        return 141


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tuneprint", description="Audio fingerprinting and music similarity search.")
    parser.add_argument("--version", action="version", version=f"tuneprint {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    library_commands.add_parser_add(sub)
    query_commands.add_parsers(sub)
    monitor_command.add_parser(sub)
    classify_command.add_parsers(sub)
    library_commands.add_catalog_parsers(sub)
    train_command.add_parser(sub)
    evaluate_command.add_parser(sub)
    serve_command.add_parser(sub)
    return parser
