"""`tuneprint doctor`: check every part of a library folder and, where it can, repair it.

What can be rebuilt is rebuilt: settings from defaults and what the folder still tells (the
model file, the index's own config), the index by re-embedding the catalog's audio files, and
rows that point at no song are dropped. A catalog SQLite cannot read is not guessed at: the
finding says to restore it or to build a new library.
"""
from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from tuneprint.errors import TuneprintError
from tuneprint.index.vectors import META_FILE, IndexConfig, load_index

from .folder import CATALOG_FILE, INDEX_DIR, LIBRARY_MODEL, SETTINGS_FILE, LibrarySettings, read_settings, write_settings

log = logging.getLogger(__name__)

ORPHANS = ("runs", "labels", "spectra", "styles")  # tables whose rows belong to a song


@dataclass
class Finding:
    file: str  # the part of the library concerned, relative to its folder
    problem: str
    fix: str  # what repair does, or what the user must do
    repairable: bool
    repaired: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def check(root: Path) -> list[Finding]:
    """Every problem of the library folder ``root``; an empty list when it is healthy."""
    root = Path(root)
    if not root.is_dir():
        return [Finding(".", f"{root} is not a folder", "give the library's folder", False)]
    findings = _check_settings(root) + _check_leftovers(root)
    catalog_findings = _check_catalog(root)
    findings += catalog_findings
    if not catalog_findings:
        findings += _check_index(root)
    if not findings:
        findings += _check_styles(root) + _check_rule(root)
    return findings


def repair(root: Path, progress=None) -> list[Finding]:
    """Check, then repair what can be repaired, in order: settings, leftovers, orphans, the index."""
    root = Path(root)
    findings = check(root)
    for finding in findings:
        if not finding.repairable:
            continue
        try:
            REPAIRS[finding.file](root, progress)
            finding.repaired = True
        except (TuneprintError, OSError, sqlite3.Error, ValueError) as e:
            finding.fix += f" (repair failed: {e})"
            log.warning("could not repair %s: %s", finding.file, e)
    return findings


def _check_settings(root: Path) -> list[Finding]:
    try:
        read_settings(root)
        return []
    except (OSError, ValueError, TypeError, AttributeError, KeyError, TuneprintError) as e:
        return [Finding(SETTINGS_FILE, f"cannot be read ({type(e).__name__}: {e})",
                        "rewrite it from defaults, the library's model file and its index's config", True)]


def _check_leftovers(root: Path) -> list[Finding]:
    stale = [p.name for p in root.iterdir() if p.name in (f"{INDEX_DIR}.new", f"{INDEX_DIR}.old")]
    if not stale:
        return []
    return [Finding("leftovers", f"files of an interrupted write: {', '.join(sorted(stale))}", "remove them", True)]


def _check_catalog(root: Path) -> list[Finding]:
    path = root / CATALOG_FILE
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(verdict)
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            orphans = {t: db.execute(f"SELECT COUNT(*) FROM {t} WHERE song_id NOT IN (SELECT song_id FROM songs)")
                       .fetchone()[0] for t in ORPHANS if t in tables}
            paths = [r[0] for r in db.execute("SELECT path FROM songs")]
    except sqlite3.Error as e:
        return [Finding(CATALOG_FILE, f"cannot be read ({e})",
                        "restore it from a backup, or build a new library with `tuneprint add`", False)]
    findings = []
    if any(orphans.values()):
        counts = ", ".join(f"{n} {t}" for t, n in orphans.items() if n)
        findings.append(Finding("orphans", f"rows that belong to no song: {counts}", "delete them", True))
    gone = [p for p in paths if not Path(p).is_file()]
    if gone:
        findings.append(Finding("audio", f"{len(gone)} songs' files are gone (e.g. {gone[0]}): they are still found, "
                                "but the index cannot be rebuilt for them", "move the files back, or "
                                "`tuneprint remove` those songs", False))
    return findings


def _check_index(root: Path) -> list[Finding]:
    from tuneprint.index.catalog import Catalog

    catalog = Catalog(root / CATALOG_FILE, read_only=True)
    try:
        index = load_index(root / INDEX_DIR, model_id=catalog.get_meta("model_id"))
        missing = set(catalog.row_ids().tolist()) - set(index.ids().tolist())
    except (TuneprintError, OSError, ValueError, KeyError, RuntimeError) as e:
        return [Finding(INDEX_DIR, f"cannot be used ({type(e).__name__}: {e})",
                        "rebuild it by re-embedding the catalog's audio files", True)]
    finally:
        catalog.close()
    if missing:
        return [Finding(INDEX_DIR, f"lacks {len(missing)} snippets the catalog lists",
                        "rebuild it by re-embedding the catalog's audio files", True)]
    return _check_codec(index)


def _check_codec(index) -> list[Finding]:
    """A codec trained on the library when it was much smaller than now (index/segments.py)."""
    trained_at = getattr(index, "codec_trained_at", None)
    limit = index.config.codec_growth_limit
    if not trained_at or not limit or len(index) <= limit * trained_at:
        return []
    return [Finding("codec", f"the index codec was trained when the library held {trained_at:,} vectors; it holds "
                    f"{len(index):,} now, {len(index) / trained_at:.0f}× as many (past codec_growth_limit {limit:g})",
                    "run `tuneprint reindex`: it re-embeds every song and trains the codec on a sample of them all",
                    False)]


def _check_styles(root: Path) -> list[Finding]:
    """Style vectors made by another style head than the library's, or missing (an older tuneprint)."""
    from tuneprint.index.catalog import Catalog

    from .style import STYLE_ID_KEY, style_for, style_spec

    catalog = Catalog(root / CATALOG_FILE, read_only=True)
    try:
        style = style_for(catalog.get_meta("model_id"), style_spec(root, read_settings(root).style))
        recorded, missing = catalog.get_meta(STYLE_ID_KEY), catalog.songs_without_style()
    finally:
        catalog.close()
    if style is None or (recorded == style.style_id and not missing):
        return []
    return [Finding("styles", f"style vectors of {recorded or 'no style head'} ({missing} songs without one); "
                    f"the library's style head is {style.style_id}: `similar` and `genre` refuse it",
                    "re-embed the songs (`tuneprint reindex`)", True)]


def _calibrated_rule(root: Path):
    """The vote settings shipped for the library's encoder (encoder/weights/calibration.json), or None."""
    from tuneprint.index.catalog import Catalog

    from .folder import shipped_vote

    catalog = Catalog(root / CATALOG_FILE, read_only=True)
    try:
        model_id = catalog.get_meta("model_id")
    finally:
        catalog.close()
    return shipped_vote(model_id) if model_id else None


def _check_rule(root: Path) -> list[Finding]:
    """A library that decides "unknown" by another rule than the one shipped for its encoder (made by
    an older tuneprint: a library keeps the rule of its day until told otherwise)."""
    shipped, recorded = _calibrated_rule(root), read_settings(root).vote
    if shipped is None or recorded is None or recorded == shipped:
        return []
    return [Finding("rule", "decides \"unknown\" by another rule than the one calibrated for its encoder "
                    "(encoder/weights/calibration.json; docs/BENCHMARKS.md measures both)",
                    "adopt the calibrated rule in settings.json (nothing is re-embedded)", True)]


def _repair_rule(root: Path, progress) -> None:
    write_settings(root, replace(read_settings(root), vote=_calibrated_rule(root)))


def _repair_settings(root: Path, progress) -> None:
    index = IndexConfig()
    try:
        index = IndexConfig(**json.loads((root / INDEX_DIR / META_FILE).read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # the index is rebuilt anyway if it is damaged too
    model = LIBRARY_MODEL if (root / LIBRARY_MODEL).is_file() else "default"
    settings = LibrarySettings(model=model, index=index)
    from .folder import calibrated_vote, load_library_model

    vote = calibrated_vote(load_library_model(root, model))
    write_settings(root, LibrarySettings(model=model, index=index, vote=vote) if vote else settings)


def _repair_leftovers(root: Path, progress) -> None:
    for name in (f"{INDEX_DIR}.new", f"{INDEX_DIR}.old"):
        shutil.rmtree(root / name, ignore_errors=True)


def _repair_orphans(root: Path, progress) -> None:
    with sqlite3.connect(root / CATALOG_FILE) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in ORPHANS:
            if table in tables:
                db.execute(f"DELETE FROM {table} WHERE song_id NOT IN (SELECT song_id FROM songs)")


def _repair_index(root: Path, progress) -> None:
    from .library import Library

    with Library.open(root, check_model=False) as lib:
        lib.reindex(progress=progress)


REPAIRS = {SETTINGS_FILE: _repair_settings, "leftovers": _repair_leftovers, "orphans": _repair_orphans,
           INDEX_DIR: _repair_index, "styles": _repair_index, "rule": _repair_rule}
