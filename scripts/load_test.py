#!/usr/bin/env python3
"""Load check of the HTTP service: concurrent clients send short clips to ``POST /identify``.

Starts ``tuneprint serve`` on loopback (or uses a running server, ``--url``), cuts clips at
random from the library's own tracks (the files its catalog points to; the server must
run on this machine), lets ``--clients`` threads send them back to back for ``--seconds``,
and reports requests/s, latency percentiles, errors and how many clips were identified
right. ``--out`` writes (or replaces) a markdown section in that file.

    .venv/bin/python scripts/load_test.py --library demo-library --clients 20 --seconds 60 --out docs/BENCHMARKS.md

Not a test: timings depend on the machine, and nothing here asserts.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuneprint.errors import TuneprintError
from tuneprint.server.evaluation.http_load import TITLE, LoadConfig, run_load_test, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, required=True, help="library folder to serve (and to cut clips from)")
    parser.add_argument("--url", help="a server already running on this machine, e.g. http://127.0.0.1:8000/ "
                                      "(default: start `tuneprint serve --library LIB` on a free port)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    parser.add_argument("--clip-seconds", type=float, default=3.0, help="length of each clip (default 3)")
    parser.add_argument("--clips", type=int, default=64, help="distinct clips prepared (default 64)")
    parser.add_argument("--threads", type=int, default=8, help="server worker threads when started here (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="markdown file to write the results section into (e.g. docs/BENCHMARKS.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = LoadConfig(clients=args.clients, seconds=args.seconds, clip_seconds=args.clip_seconds, clips=args.clips,
                     threads=args.threads, seed=args.seed)
    try:
        result, info = run_load_test(args.library, cfg, args.url)
    except TuneprintError as e:
        raise SystemExit(str(e)) from None
    print(json.dumps(result, indent=2))
    if args.out:
        write_results(args.out, result, cfg, info, args.url)
        print(f"wrote the section {TITLE!r} in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
