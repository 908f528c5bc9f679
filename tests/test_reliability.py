"""A library that never breaks: one writer at a time across processes, kills at any moment, readers
that follow other processes' writes, damaged files named, read-only folders still searched."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

import tuneprint.server.folder as folder_module
from tuneprint.errors import BusyError, DamagedLibraryError, LibraryError
from tuneprint.server.library import Library, LibrarySettings
from tuneprint.server.writelock import writer_lock
from tests.conftest import TEST_MODEL, cut, synth_song

REPO = Path(__file__).resolve().parent.parent


def run_child(code: str, *, wait: bool = True, **fmt) -> subprocess.Popen | subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process (its own library objects, its own file locks)."""
    source = textwrap.dedent(code).format(**{k: repr(str(v)) if isinstance(v, Path) else repr(v) for k, v in fmt.items()})
    args = [sys.executable, "-c", source]
    if not wait:
        return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def song_ids(root: Path) -> set[str]:
    with Library.open(root) as lib:
        return {s.song_id for s in lib.tracks()}


# -- one writer at a time -------------------------------------------------------------------
def test_a_second_writer_waits_then_gets_the_busy_error_and_nothing_changes(library_copy, song_dir):
    holder = run_child("""
        import time, sys
        from pathlib import Path
        from tuneprint.server.writelock import writer_lock
        with writer_lock(Path({root})):
            print("holding", flush=True)
            time.sleep(30)
        """, wait=False, root=library_copy)
    try:
        assert holder.stdout.readline().strip() == "holding"
        before = song_ids(library_copy)
        with Library.open(library_copy) as lib:
            lib.write_wait_s = 0.5
            target = lib.tracks()[0].song_id
            started = time.monotonic()
            with pytest.raises(BusyError, match="busy"):
                lib.remove(target)
            assert time.monotonic() - started >= 0.4  # it waited before giving up
        assert song_ids(library_copy) == before
    finally:
        holder.kill()
        holder.wait()
    with Library.open(library_copy) as lib:  # the kernel released the killed holder's lock
        lib.write_wait_s = 5
        lib.remove(target)
    assert song_ids(library_copy) == before - {target}


def test_readers_follow_what_another_process_wrote(library_copy, song_dir, tmp_path):
    """A long-lived reader (a server) finds a song another process added, and its own later write
    keeps the library whole."""
    newcomer = tmp_path / "newcomer.wav"
    import soundfile as sf

    sf.write(newcomer, synth_song(42), 22050)
    with Library.open(library_copy) as reader:
        result = run_child("""
            from pathlib import Path
            from tuneprint.server.library import Library
            with Library.open(Path({root})) as lib:
                print(lib.add([Path({song})])[0].status)
            """, root=library_copy, song=newcomer)
        assert result.stdout.strip() == "added", result.stderr
        stats = reader.stats()  # what a server's /stats shows: the other process's song and its vectors
        assert stats["songs"] == len(reader.tracks()) and stats["vectors"] == stats["snippets"]
        clip = tmp_path / "clip.wav"
        sf.write(clip, cut(synth_song(42), 6.0, 3.0), 22050)
        assert reader.identify(clip).candidates[0].song.path == str(newcomer.resolve())
        reader.remove(reader.tracks()[0].song_id)
    with Library.open(library_copy) as lib:  # opens: catalog and index agree
        assert str(newcomer.resolve()) in {s.path for s in lib.tracks()}


# -- kills at any moment --------------------------------------------------------------------
KILL_AT_INDEX_SAVE = """
    import os
    from pathlib import Path
    import tuneprint.server.library as library_module
    from tuneprint.server.library import Library, LibrarySettings
    files = sorted(Path({songs}).glob("*.wav"))
    reported = []
    lib = Library.create(Path({root}), LibrarySettings(model={model}, commit_every=2))
    real_save = library_module.save_index
    def save_then_die(*args, **kwargs):  # the index is written, the catalog not yet committed
        real_save(*args, **kwargs)
        if len(reported) >= 2:
            os._exit(9)
    library_module.save_index = save_then_die
    def report(batch):
        for r in batch:
            print(r.song_id, flush=True)
            reported.append(r)
    lib.add(files[:6], on_commit=report)
    """


def test_a_kill_during_a_commit_keeps_exactly_the_reported_songs(song_dir, tmp_path):
    root = tmp_path / "library"
    child = run_child(KILL_AT_INDEX_SAVE, songs=song_dir, root=root, model=TEST_MODEL)
    assert child.returncode == 9, child.stderr
    reported = set(child.stdout.split())
    assert len(reported) == 2
    assert song_ids(root) == reported  # the third batch's vectors were dropped on open
    with Library.open(root) as lib:  # running the same add again finishes the job, without duplicates
        results = lib.add(sorted(song_dir.glob("*.wav"))[:6])
        assert sorted(r.status for r in results) == ["added"] * 4 + ["duplicate"] * 2
        assert len(lib.tracks()) == 6 and len(lib.index) == lib.catalog.counts()["snippets"]


def test_a_kill_while_the_library_is_created_leaves_no_library(song_dir, tmp_path):
    root = tmp_path / "library"
    child = run_child("""
        import os
        from pathlib import Path
        import tuneprint.server.folder as folder
        from tuneprint.server.library import Library, LibrarySettings
        folder.save_index = lambda *a, **k: os._exit(9)
        Library.create(Path({root}), LibrarySettings(model={model}))
        """, root=root, model=TEST_MODEL)
    assert child.returncode == 9, child.stderr
    assert not root.exists()
    with Library.create(root, LibrarySettings(model=TEST_MODEL)) as lib:  # and the folder can be used again
        assert lib.add(sorted(song_dir.glob("*.wav"))[:1])[0].status == "added"


# -- damage is diagnosed ------------------------------------------------------------------------
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])


DAMAGE = {
    "settings-truncated": ("settings.json", _truncate),
    "settings-empty": ("settings.json", lambda p: p.write_text("")),
    "settings-binary": ("settings.json", lambda p: p.write_bytes(bytes(range(256)))),
    "settings-list": ("settings.json", lambda p: p.write_text("[1, 2]")),
    "settings-wrong-type": ("settings.json", lambda p: p.write_text(json.dumps(
        {**json.loads(p.read_text()), "index": "faiss"}))),
    "vectors-truncated": ("index/seg-000001.npz", _truncate),  # the first commit's segment
    "index-json-truncated": ("index/index.json", _truncate),
    "catalog-truncated": ("catalog.sqlite", _truncate),
    "catalog-random": ("catalog.sqlite", lambda p: p.write_bytes(os.urandom(p.stat().st_size))),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_every_damaged_file_is_named_with_what_to_do(library_copy, case):
    name, damage = DAMAGE[case]
    for wal in library_copy.glob("catalog.sqlite-*"):
        wal.unlink()  # checkpointed by the closed library; a leftover log would mask the damage
    damage(library_copy / name)
    with pytest.raises(DamagedLibraryError) as caught:
        Library.open(library_copy).close()
    message = str(caught.value)
    assert name.split("/")[0] in message and "tuneprint doctor" in message


# -- read-only folders ----------------------------------------------------------------------
def test_a_read_only_library_is_searched_but_not_changed(library_copy, monkeypatch, tmp_path):
    """Simulated with os.access (the suite may run as root, for whom nothing is read-only)."""
    monkeypatch.setattr(folder_module.os, "access", lambda path, mode: False)
    import soundfile as sf

    clip = tmp_path / "clip.wav"
    sf.write(clip, cut(synth_song(3), 4.0, 3.0), 22050)
    with Library.open(library_copy) as lib:
        assert lib.catalog.read_only
        assert lib.identify(clip).candidates
        with pytest.raises(LibraryError, match="read-only"):
            lib.remove(lib.tracks()[0].song_id)


def test_the_writer_lock_is_released_when_its_holder_leaves(tmp_path):
    with writer_lock(tmp_path, 0):
        with pytest.raises(BusyError):
            run_result = run_child("""
                from pathlib import Path
                from tuneprint.server.writelock import writer_lock
                with writer_lock(Path({root}), 0.2):
                    pass
                """, root=tmp_path)
            if run_result.returncode != 0 and "BusyError" in run_result.stderr:
                raise BusyError("child was refused")
    with writer_lock(tmp_path, 0):  # free again
        pass


# -- the doctor -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["settings-truncated", "settings-wrong-type", "vectors-truncated",
                                  "index-json-truncated"])
def test_the_doctor_repairs_what_can_be_rebuilt(library_copy, case):
    from tuneprint.server import doctor

    before = song_ids(library_copy)
    name, damage = DAMAGE[case]
    damage(library_copy / name)
    findings = doctor.repair(library_copy)
    assert findings and all(f.repaired for f in findings), [f.to_dict() for f in findings]
    assert doctor.check(library_copy) == []
    with Library.open(library_copy) as lib:
        assert {s.song_id for s in lib.tracks()} == before
        assert len(lib.index) == lib.catalog.counts()["snippets"]


def test_the_doctor_drops_orphaned_rows_and_leaves_an_unreadable_catalog_to_the_user(library_copy):
    import sqlite3

    from tuneprint.server import doctor

    with sqlite3.connect(library_copy / "catalog.sqlite") as db:
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("INSERT INTO labels (song_id, label) VALUES ('nosuchsong', 'x')")
    assert [f.file for f in doctor.check(library_copy)] == ["orphans"]
    assert all(f.repaired for f in doctor.repair(library_copy)) and doctor.check(library_copy) == []
    for wal in library_copy.glob("catalog.sqlite-*"):
        wal.unlink()
    DAMAGE["catalog-random"][1](library_copy / "catalog.sqlite")
    findings = doctor.repair(library_copy)
    assert [(f.file, f.repairable, f.repaired) for f in findings] == [("catalog.sqlite", False, False)]
    assert "backup" in findings[0].fix


# -- the command line -------------------------------------------------------------------------
def test_every_damaged_file_gives_exit_3_and_one_sentence(library_copy, capsys):
    from tuneprint.server.cli import main

    DAMAGE["vectors-truncated"][1](library_copy / "index/seg-000001.npz")
    assert main(["identify", "--library", str(library_copy), str(library_copy / "settings.json")]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seg-000001.npz" in err and "tuneprint doctor" in err and "Traceback" not in err
    assert main(["doctor", "--library", str(library_copy)]) == 3
    assert "can be repaired with --repair" in capsys.readouterr().out
    assert main(["doctor", "--library", str(library_copy), "--repair"]) == 0
    assert main(["doctor", "--library", str(library_copy)]) == 0
    assert "healthy" in capsys.readouterr().out


def test_a_busy_library_makes_add_wait_then_exit_3(library_copy, tmp_path):
    import soundfile as sf

    newcomer = tmp_path / "newcomer.wav"
    sf.write(newcomer, synth_song(77), 22050)
    command = """
        from tuneprint.server.cli import main
        raise SystemExit(main(["add", "--library", {root}, "--wait", "0.5", {song}]))
        """
    with writer_lock(library_copy):  # another process is writing
        child = run_child(command, root=library_copy, song=newcomer)
    assert child.returncode == 3 and "busy" in child.stderr and "Traceback" not in child.stderr
    assert str(newcomer.resolve()) not in {s.path for s in Library.open(library_copy).tracks()}
    child = run_child(command, root=library_copy, song=newcomer)  # free again: it goes through
    assert child.returncode == 0, child.stderr


def test_adding_only_missing_files_creates_no_library(tmp_path, capsys):
    from tuneprint.server.cli import main

    root = tmp_path / "new-library"
    assert main(["add", "--library", str(root), str(tmp_path / "nothing-here.wav")]) == 1
    assert "nothing-here.wav: no such file" in capsys.readouterr().err
    assert not root.exists()


def test_the_doctor_offers_the_rule_calibrated_for_the_encoder_to_a_library_of_an_older_day(library_copy):
    from tuneprint.server import doctor
    from tuneprint.server.folder import read_settings, shipped_vote, write_settings

    settings = read_settings(library_copy)
    with Library.open(library_copy) as lib:
        calibrated = shipped_vote(lib.model_id)
    if calibrated is None:
        pytest.skip("no rule is shipped for this test encoder")
    assert settings.vote == calibrated and doctor.check(library_copy) == []
    write_settings(library_copy, replace(settings, vote=replace(calibrated, score_rule=(), min_evidence=0.7)))
    findings = doctor.check(library_copy)
    assert [(f.file, f.repairable) for f in findings] == [("rule", True)]
    assert all(f.repaired for f in doctor.repair(library_copy)) and doctor.check(library_copy) == []
    assert read_settings(library_copy).vote == calibrated


def test_the_doctor_asks_for_a_reindex_once_the_library_outgrew_its_codec(song_dir, tmp_path):
    from tuneprint.index.vectors import IndexConfig
    from tuneprint.server import doctor

    root = tmp_path / "library"
    files = sorted(song_dir.glob("*.wav"))
    index = IndexConfig(faiss_factory="PCA16,PQ8", train_min=300, codec_growth_limit=1.2)
    with Library.create(root, LibrarySettings(model=TEST_MODEL, index=index)) as lib:
        lib.add(files[:7], allow_non_music=True)  # ≈330 vectors: the codec is trained on these
        trained_at = lib.stats()["codec_trained_at"]
        assert trained_at == len(lib.index)
        assert doctor.check(root) == []
        lib.add(files[7:], allow_non_music=True)  # ≈1.4× as many since
    findings = doctor.check(root)
    assert [(f.file, f.repairable) for f in findings] == [("codec", False)]
    assert f"{trained_at:,} vectors" in findings[0].problem and "tuneprint reindex" in findings[0].fix
    with Library.open(root) as lib:
        lib.reindex()  # songs in a shuffled order: the codec's sample comes from all of them
        assert lib.stats()["codec_trained_at"] == len(lib.index) > trained_at
    assert doctor.check(root) == []
