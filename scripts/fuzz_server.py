#!/usr/bin/env python3
"""Fuzz check of the HTTP service: over a thousand hostile requests and 200 slow clients.

Serves a temporary copy of ``--library`` with ``tuneprint serve`` on 127.0.0.1 (only), sends
random bytes, damaged audio of every format, 25-Hz and 100-Hz WAVs, headers that lie about
lengths, wrong content types, methods, ids, tokens and names, oversize and malformed bodies;
then queries from one address past the rate limit; then holds slow clients' sockets while it
asks ``/health``. It stops by itself (a few minutes) and reports status codes, latency and the
server's memory; ``--out`` writes the section "HTTP service under hostile clients".

    .venv/bin/python scripts/fuzz_server.py --library demo-library --out docs/BENCHMARKS.md

Exit status 1 when a check fails (a 5xx, a hang, memory over the bound, a slow /health).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tuneprint.errors import TuneprintError
from tuneprint.server.evaluation.http_fuzz import TITLE, FuzzConfig, run_fuzz, write_results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library", type=Path, required=True, help="a small library of real music (it is copied, not changed)")
    parser.add_argument("--slow-clients", type=int, default=200, help="half-sent requests held open at once (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="markdown file to write the results section into (e.g. docs/BENCHMARKS.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    cfg = FuzzConfig(seed=args.seed, slow_clients=args.slow_clients)
    try:
        result = run_fuzz(args.library, cfg)
    except TuneprintError as e:
        raise SystemExit(str(e)) from None
    print(json.dumps(result, indent=2))
    if args.out:
        write_results(args.out, result, cfg)
        print(f"wrote the section {TITLE!r} in {args.out}", file=sys.stderr)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
