"""Write one named section of docs/BENCHMARKS.md, keeping the others, with command, machine and date."""
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


def provenance() -> str:
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    return f"- command: `python {command}`\n- machine: {machine()}\n- date: {date.today().isoformat()}\n"


def write_section(path: str | os.PathLike, name: str, title: str, body: str) -> None:
    """Replace (or append) the section ``name`` of the markdown file at ``path``."""
    path = Path(path)
    text = path.read_text() if path.exists() else HEADER
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    block = f"{start}\n## {title}\n\n{provenance()}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
