"""server/distributed.py: ingest with decode and embed on Ray actors, here on a local Ray started by
the ingest itself (``--ray local``), ends in the same library as a serial ingest."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tuneprint.errors import TuneprintError
from tuneprint.server import distributed
from tuneprint.server.cli import EXIT_LIBRARY, EXIT_PARTIAL, EXIT_USAGE, main
from tuneprint.server.distributed import MISSING_RAY, RayIngest
from tuneprint.server.library import Library, LibrarySettings
from tests.conftest import SR, TEST_MODEL, cut, synth_song

SONG_S = 10.0
SEEDS = (510, 511, 512)


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> list[Path]:
    """Three short songs, a copy of the first (a duplicate) and a file that is not audio."""
    folder = tmp_path_factory.mktemp("ray-songs")
    files = [folder / f"r{seed}.wav" for seed in SEEDS]
    for seed, f in zip(SEEDS, files):
        sf.write(f, synth_song(seed, seconds=SONG_S), SR)
    copy = shutil.copy(files[0], folder / "copy.wav")
    bad = folder / "notes.wav"
    bad.write_text("not audio")
    return [*files, Path(copy), bad]


@pytest.fixture(scope="module")
def serial_library(tmp_path_factory, songs) -> Path:
    root = tmp_path_factory.mktemp("serial") / "library"
    with Library.create(root, LibrarySettings(model=TEST_MODEL)) as lib:
        lib.add(songs, labels=labels_of(songs))
    return root


@pytest.fixture(autouse=True, scope="module")
def no_ray_left():
    """Whatever the tests start of Ray is shut down when they end."""
    ray = pytest.importorskip("ray")
    yield
    ray.shutdown()
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the ingests below (they use a session this process already has). Ray's
    raylet must register within its own 30 s; on a loaded 2-core machine it sometimes does not, twice
    in a row: then these tests are skipped, saying so, rather than failing on Ray's start-up."""
    ray = pytest.importorskip("ray")
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False)
            break
        except Exception as e:  # Ray raises a bare Exception when its node times out starting
            ray.shutdown()
            if attempt == 2:
                pytest.skip(f"a local Ray could not start on this machine: {e}")
    yield ray


def labels_of(songs: list[Path]) -> dict[str, list[str]]:
    return {str(f.resolve()): [f"label{i % 2}"] for i, f in enumerate(songs)}


def assert_same_library(root: Path, serial_root: Path) -> None:
    """Same songs (ids, paths, titles, labels, snippet counts), same row ids, vectors equal to float tolerance."""
    with Library.open(root) as lib, Library.open(serial_root) as serial:
        assert [s.to_dict() for s in lib.tracks()] == [s.to_dict() for s in serial.tracks()]
        assert lib.stats()["snippets"] == serial.stats()["snippets"]
        for song in lib.tracks():
            rows = lib.catalog.row_ids(song.song_id)
            np.testing.assert_array_equal(rows, serial.catalog.row_ids(song.song_id))
            np.testing.assert_allclose(lib.index.vectors(rows), serial.index.vectors(rows), atol=1e-5)


def test_ray_ingest_builds_the_same_library_as_a_serial_one(ray_session, songs, serial_library, tmp_path):
    """Two actors, one file ahead each, two files per commit: results in the files' order, the
    duplicate and the bad file reported as serially, the same library, and a clip identified."""
    with Library.create(tmp_path / "library", LibrarySettings(model=TEST_MODEL)) as lib:
        results = lib.add(songs, labels=labels_of(songs), commit_every=2,
                          ray=RayIngest("local", actors=2, in_flight_per_actor=1))
    assert [(r.path, r.status) for r in results] == [(str(f.resolve()), s) for f, s in
                                                     zip(songs, ["added"] * 3 + ["duplicate", "failed"])]
    assert_same_library(tmp_path / "library", serial_library)
    clip = tmp_path / "clip.wav"
    sf.write(clip, cut(synth_song(SEEDS[1], seconds=SONG_S), 4.0), SR)
    with Library.open(tmp_path / "library") as lib:
        assert lib.identify(clip).candidates[0].song.path == str(songs[1].resolve())


def test_add_command_with_ray_local(ray_session, songs, serial_library, tmp_path, capsys):
    csv = tmp_path / "labels.csv"
    csv.write_text("".join(f"{path},{labels[0]}\n" for path, labels in labels_of(songs).items()))
    rc = main(["add", "--library", str(tmp_path / "library"), "--model", TEST_MODEL, "--labels", str(csv),
               "--ray", "local", "--ray-actors", "2", "--json", *map(str, songs)])
    out, err = capsys.readouterr()
    assert rc == EXIT_PARTIAL, err  # the bad file
    assert [json.loads(line)["status"] for line in out.splitlines()] == ["added"] * 3 + ["duplicate", "failed"]
    assert_same_library(tmp_path / "library", serial_library)


def test_ray_options_are_checked(songs, tmp_path, capsys):
    rc = main(["add", "--library", str(tmp_path / "lib"), "--ray", "local", "--jobs", "2", str(songs[0])])
    assert rc == EXIT_USAGE and "--ray-actors" in capsys.readouterr().err
    rc = main(["add", "--library", str(tmp_path / "lib"), "--ray", "local", "--ray-actors", "0", str(songs[0])])
    assert rc == EXIT_USAGE
    assert not (tmp_path / "lib").exists()


def test_without_ray_installed_the_option_says_what_to_install(songs, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    with pytest.raises(TuneprintError, match="tuneprint\\[cluster\\]"):
        distributed.require_ray()
    rc = main(["add", "--library", str(tmp_path / "lib"), "--ray", "auto", str(songs[0])])
    assert rc == EXIT_LIBRARY and MISSING_RAY in capsys.readouterr().err
    assert not (tmp_path / "lib").exists()


# -- the window of files in flight, without Ray -------------------------------------------------
class _FakeRay:
    """Just enough of ``ray`` for :func:`distributed._in_order`: tasks finish when fetched."""

    def __init__(self):
        self.outstanding, self.most = 0, 0

    def get(self, ref):
        self.outstanding -= 1
        return ref


class _FakeActor:
    def __init__(self, fake: _FakeRay, name: str):
        self.fake, self.name = fake, name
        self.prepare = self  # actor.prepare.remote(path)

    def remote(self, path: str):
        self.fake.outstanding += 1
        self.fake.most = max(self.fake.most, self.fake.outstanding)
        return self.name, path


def test_files_in_flight_are_bounded_and_answers_come_in_order(tmp_path):
    fake = _FakeRay()
    actors = [_FakeActor(fake, "a"), _FakeActor(fake, "b")]
    paths = [tmp_path / f"{i}.wav" for i in range(9)]
    answers = list(distributed._in_order(fake, actors, paths, window=4))
    assert [path for _, path in answers] == [str(p.resolve()) for p in paths]
    assert [actor for actor, _ in answers] == ["a", "b"] * 4 + ["a"]
    assert fake.most == 4 and fake.outstanding == 0
