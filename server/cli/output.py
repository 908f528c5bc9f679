"""``--out FILE``: a batch's answers written to a file, its format chosen by the extension.

- ``.jsonl``: one JSON object per line, the same object ``--json`` prints; a file that could not
  be answered is a line ``{"query": PATH, "error": MESSAGE}``;
- ``.csv``: a header row, then flat rows (columns chosen by the command); failures are rows
  with ``status`` "failed" and an ``error``.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

FORMATS = (".csv", ".jsonl")


def report_path(text: str) -> Path:
    """argparse ``type`` of --out: refuses an extension other than .csv or .jsonl (a usage error)."""
    path = Path(text)
    if path.suffix.lower() not in FORMATS:
        raise argparse.ArgumentTypeError(f"{text}: the format follows the extension; name a .csv or .jsonl file")
    return path


class Report:
    """An open --out file. ``columns`` are the CSV's; ``write(answer, rows)`` takes the answer's JSON
    object and its CSV rows, and each format keeps what it needs."""

    def __init__(self, path: Path, columns: tuple[str, ...]):
        self.path = path
        self.jsonl = path.suffix.lower() == ".jsonl"
        self._file = open(path, "w", newline="" if not self.jsonl else None, encoding="utf-8")
        self._csv = None
        if not self.jsonl:
            self._csv = csv.DictWriter(self._file, fieldnames=columns, extrasaction="ignore")
            self._csv.writeheader()

    def write(self, answer: dict, rows: list[dict]) -> None:
        if self.jsonl:
            self._file.write(json.dumps(answer) + "\n")
        else:
            self._csv.writerows(rows)
        self._file.flush()  # a long batch's file is readable (and survives Ctrl-C) as it goes

    def failed(self, query: str, message: str) -> None:
        self.write({"query": query, "error": message}, [{"query": query, "status": "failed", "error": message}])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Report":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def add_output_options(p: argparse.ArgumentParser, json_help: str) -> None:
    """--json and --out, for commands that answer clips."""
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--out", type=report_path, metavar="FILE",
                   help="write the answers to FILE instead of stdout: .csv (one row per answer) or "
                        ".jsonl (the --json objects); failures are recorded there too")
