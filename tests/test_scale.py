"""server/evaluation/scale.py: distractors are faster or slower copies of songs outside the benchmark."""
from __future__ import annotations

import numpy as np

from tuneprint.server.evaluation.scale import distractor_sources, shifted

SR = 22050


def test_a_shifted_copy_is_shorter_and_higher_when_faster():
    t = np.arange(SR * 2) / SR
    y = np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
    faster = shifted(y, 1.06)
    assert abs(len(faster) - len(y) / 1.06) <= 2
    peak_hz = np.argmax(np.abs(np.fft.rfft(faster))) * SR / len(faster)
    assert abs(peak_hz - 440.0 * 1.06) < 2.0


def test_distractors_come_from_songs_outside_the_benchmark(tmp_path):
    for name in ("a/one.ogg", "a/two.ogg", "b/three.mp3", "b/notes.txt"):
        (tmp_path / "music" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "music" / name).write_bytes(b"")
    sources = distractor_sources(tmp_path, {str(tmp_path / "music" / "a" / "two.ogg")})
    assert [p.name for p in sources] == ["one.ogg", "three.mp3"]


def test_distractors_leave_out_copies_of_the_clips_own_songs_and_of_their_faster_versions(tmp_path):
    from tuneprint.server.evaluation.scale import cached_distractors

    names = ["stk--celtic--x0.97", "stk--celtic_fast--x1.03", "stk--farm_f--x0.91", "stk--celtics--x0.97", "other--a--x1.0"]
    for name in names:
        (tmp_path / f"{name}.npz").write_bytes(b"")
    kept = cached_distractors(tmp_path, ["/corpus/music/stk/celtic.ogg", "/corpus/music/stk/farm.ogg"])
    assert [f.stem for f in kept] == ["other--a--x1.0", "stk--celtics--x0.97"]


def test_a_blended_copy_is_a_new_song_near_its_original_and_coherent_in_time():
    from tuneprint.encoder.embeddings import Embeddings
    from tuneprint.index.catalog import Song
    from tuneprint.server.evaluation.scale import blended_copy

    rng = np.random.default_rng(0)

    def song(name: str, n: int) -> tuple[Song, Embeddings]:
        walk = np.cumsum(rng.standard_normal((n, 64)) * 0.1, axis=0) + rng.standard_normal(64)
        v = (walk / np.linalg.norm(walk, axis=1, keepdims=True)).astype(np.float32)
        return (Song(f"distractor-{name}", f"/c/{name}.npz", name, None, n * 0.37, f"distractor:{name}", ("distractor",)),
                Embeddings(v, np.arange(n, dtype=np.float32) * 0.37, np.zeros((8, n * 16), np.float32)))

    original, other = song("a", 50), song("b", 30)
    copy, emb = blended_copy(original, other, 0.5, 2)
    assert copy.song_id == "distractor-a-copy2" and copy.audio_hash != original[0].audio_hash
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(emb.offsets_s, original[1].offsets_s)
    to_original = np.sum(emb.vectors * original[1].vectors, axis=1)
    assert 0.5 < np.median(to_original) < 0.99  # near its original, not a duplicate of it
    steps = np.sum(emb.vectors[1:] * emb.vectors[:-1], axis=1)
    assert np.median(steps) > 0.9  # neighbouring patches stay alike, as in real music
