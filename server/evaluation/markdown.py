"""The one writer of docs/BENCHMARKS.md sections: each named section is replaced in place (or
appended), with the command, machine and date that produced it; the other sections are kept.

A section lies between ``<!-- section:KEY -->`` and ``<!-- /section:KEY -->``. A section written
before those markers existed (a bare ``## TITLE`` heading, up to the next ``## ``) is replaced too.
"""
from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from datetime import date
from pathlib import Path

HEADER = "# Benchmarks\n\nEvery figure here comes from a script in `scripts/`; each section names its command, machine and date.\n"


def machine() -> str:
    """This machine in words: CPU model, cores, memory, Python."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, no GPU, Python {platform.python_version()}"


def shown_path(path: str | os.PathLike, base: str | os.PathLike) -> str:
    """``path`` as the docs name it: relative to ``base`` (the repository) when inside it."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def provenance() -> str:
    """The command that is running, this machine and today, as a markdown list."""
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    return f"- command: `python {command}`\n- machine: {machine()}\n- date: {date.today().isoformat()}\n"


def write_section(path: str | os.PathLike, key: str, title: str, body: str) -> None:
    """Replace (or append) the section ``key`` of the markdown file at ``path``, titled ``## title``."""
    path = Path(path)
    text = path.read_text() if path.exists() else HEADER
    start, end = f"<!-- section:{key} -->", f"<!-- /section:{key} -->"
    block = f"{start}\n## {title}\n\n{provenance()}\n{body.strip()}\n{end}"
    marked = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    # a heading right after a marker belongs to another key's section, whatever its title
    unmarked = re.compile(rf"(?<!-->\n)^## {re.escape(title)}\n.*?(?=^## |^<!-- section:|\Z)", re.S | re.M)
    if marked.search(text):
        text = marked.sub(lambda _: block, text)
    elif unmarked.search(text):
        text = unmarked.sub(lambda _: block + "\n\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
