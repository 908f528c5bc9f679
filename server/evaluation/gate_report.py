"""The gate's figures on the test split, on whole files as ``add`` judges them, and the
docs/BENCHMARKS.md section that shows them (with the validation figures it was chosen by)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.errors import AudioError
from tuneprint.server.gate import Gate

from .corpus import UNSEEN_LABELS, split_corpus
from .gate import NON_MUSIC_KINDS, GateSet, Selection, build_features, clip_probabilities
from .gate_data import CONDITIONS, SR, GateDataConfig, sound_files

log = logging.getLogger(__name__)

ADD_HOP_FRAMES = 8  # as LibrarySettings.index_hop_frames: files are embedded as `add` embeds them
TARGET_ACCURACY = 0.97
TARGET_MUSIC_MISS = 0.01


def _share(mask: np.ndarray) -> tuple[float, int]:
    return (float(mask.mean()) if len(mask) else float("nan")), int(len(mask))


def measure(gate: Gate, test: GateSet) -> dict:
    """Test figures: music called non-music per condition and collection kind, accuracy on each
    non-music kind, and the headline accuracy on held-out music and held-out packages' sounds."""
    p = clip_probabilities(gate, test)
    music = p >= gate.threshold
    is_music = test.label == 1
    unseen = np.array([s.split("/")[0] in UNSEEN_LABELS for s in test.source])
    out: dict = {"music_missed": {c: _share(~music[is_music & (test.condition == c)]) for c in CONDITIONS}}
    out["music_missed"]["all"] = _share(~music[is_music])
    out["music_missed_seen"] = _share(~music[is_music & ~unseen])
    out["music_missed_unseen"] = _share(~music[is_music & unseen])
    songs = sorted(set(test.source[is_music]), key=lambda s: -(~music[is_music & (test.source == s)]).sum())
    out["worst_songs"] = [(s, int((~music[test.source == s]).sum()), int((test.source == s).sum())) for s in songs[:3]]
    out["music_missed_but_worst"] = _share(~music[is_music & (test.source != songs[0])])
    out["kinds"] = {k: _share(~music[test.kind == k]) for k in NON_MUSIC_KINDS}
    out["sound_by_condition"] = {c: _share(~music[(test.kind == "sound") & (test.condition == c)]) for c in CONDITIONS}
    out["synthetic"] = {s: _share(~music[(test.kind == "synthetic") & (test.source == s)])
                        for s in sorted(set(test.source[test.kind == "synthetic"]))}
    held_out = is_music | np.isin(test.kind, ("sound", "sequence"))
    out["accuracy"] = _share((music == is_music)[held_out])
    sounds_right = float((~music[np.isin(test.kind, ("sound", "sequence"))]).mean())
    out["balanced"] = 0.5 * (1.0 - out["music_missed"]["all"][0]) + 0.5 * sounds_right
    return out


def file_checks(gate: Gate, embedder, corpus: Path, cfg: GateDataConfig = GateDataConfig()) -> dict:
    """Whole files as ``add`` judges them: the test and unseen songs (all music) and the held-out
    packages' sound files long enough to add (none music)."""
    parts = split_corpus(corpus)
    songs = [Path(p) for p, _ in parts["test"] + parts["unseen"]]
    out = {}
    for name, files, want in (("songs", songs, True), ("sounds", sound_files(corpus, "test", cfg), False)):
        verdicts, wrong = [], []
        for f in files:
            try:
                emb = embedder.embed_audio(load_audio(f, sr=SR), hop_frames=ADD_HOP_FRAMES)
            except AudioError:
                continue  # too short or silent: `add` refuses it for that
            p = gate.music_probability(emb)
            verdicts.append((p >= gate.threshold) == want)
            if not verdicts[-1]:
                wrong.append(f"{f.name} (P {p:.2f})")
        out[name] = _share(np.array(verdicts, dtype=bool))
        out[f"{name}_wrong"] = wrong
    return out


def _pct(share: tuple[float, int]) -> str:
    value, n = share
    return "–" if n == 0 else f"{100 * value:.1f} % (n={n})"


def markdown(selection: Selection, figures: dict, files: dict, counts: dict[str, dict[str, int]], weights: Path) -> str:
    """The BENCHMARKS.md section body."""
    gate, t = selection.gate, selection.gate.threshold
    ok_acc = figures["accuracy"][0] >= TARGET_ACCURACY
    worst = max(v[0] for v in figures["music_missed"].values())
    ok_miss = worst <= TARGET_MUSIC_MISS
    lines = [
        f"Gate shipped as `{weights.as_posix()}` for encoder `{gate.model_id}`: **{selection.candidate.name}**, "
        f"threshold {t:.3f} on the mean P(music) of a clip's patches. Targets: accuracy ≥ 97 % on held-out music and "
        f"held-out packages' sounds — **{'met' if ok_acc else 'missed'}** ({_pct(figures['accuracy'])}); "
        f"≤ 1 % of real 3-s music clips called non-music in every condition — **{'met' if ok_miss else 'missed'}** "
        f"(worst {100 * worst:.1f} %). In use, {_pct(figures['music_missed']['all'])} of real 3-s music clips are "
        "answered \"not music\" instead of a song or a label" + (
            f"; `add` refused {len(files['songs_wrong'])} of {files['songs'][1]} whole songs" if files else "") + ".",
        "",
        "Data (3-s clips; splits by song, by file and by package, see `server/evaluation/gate_data.py`):",
        "",
        "| split | " + " | ".join(["music", *NON_MUSIC_KINDS]) + " |",
        "| --- | " + " | ".join(["---"] * (1 + len(NON_MUSIC_KINDS))) + " |",
    ]
    for split, c in counts.items():
        lines.append(f"| {split} | " + " | ".join(str(c.get(k, 0)) for k in ["music", *NON_MUSIC_KINDS]) + " |")
    lines += ["", "Music: train/val songs of the training collections; test = test songs + every song of the unseen "
              "collections, mixed with held-out packages' sounds and test-voice speech for the noise and phone "
              "conditions. Sounds: `noise/` split by file for train/val, `noise-heldout/` (alienblaster, solarwolf, "
              "ri-li) for test; sequences scatter 2–6 of a split's sounds over a clip. Speech: espeak-ng; test "
              "languages, voice variants and sentences never trained on.", "",
              "Model choice on the validation split (threshold: 0.5, lowered until at most 0.5 % of validation music "
              "clips fall below it; score: mean of music accuracy and the mean accuracy over non-music kinds; kept: "
              "the model with the fewest weights among those within one standard error of the best score):", "",
              "| model | threshold | music | sound | sequence | speech | synthetic | score |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for cand, thr, s in selection.rows:
        reg = f"C={cand.c:g}" if cand.hidden == 0 else f"wd={cand.weight_decay:g}"
        mark = " **(kept)**" if cand == selection.candidate else ""
        lines.append(f"| {cand.name}, {reg}{mark} | {thr:.3f} | " + " | ".join(
            f"{100 * s.get(k, float('nan')):.1f} %" for k in ("music", *NON_MUSIC_KINDS, "balanced")) + " |")
    lines += ["", "Test split (the kept model; nothing is chosen on it):", "",
              "| what | share |", "| --- | --- |",
              "| accuracy, held-out music + held-out packages' sounds (single sounds and sequences) | "
              f"{_pct(figures['accuracy'])} |",
              f"| balanced accuracy (music, held-out sounds) | {100 * figures['balanced']:.1f} % |"]
    for c, share in figures["music_missed"].items():
        lines.append(f"| music clips called non-music, {c} | {_pct(share)} |")
    lines += ["| music clips called non-music, test songs of training collections | "
              f"{_pct(figures['music_missed_seen'])} |",
              f"| music clips called non-music, unseen collections | {_pct(figures['music_missed_unseen'])} |",
              "| songs with the most clips called non-music | " + ", ".join(
                  f"{s} {k}/{n}" for s, k, n in figures["worst_songs"]) + " |",
              "| music clips called non-music, all but the first of those songs | "
              f"{_pct(figures['music_missed_but_worst'])} |"]
    for k, share in figures["kinds"].items():
        lines.append(f"| {k} clips called non-music | {_pct(share)} |")
    for c, share in figures["sound_by_condition"].items():
        lines.append(f"| held-out single sounds called non-music, {c} | {_pct(share)} |")
    lines.append("| synthetic called non-music, by kind | " + ", ".join(
        f"{s} {100 * v:.0f} %" for s, (v, n) in figures["synthetic"].items()) + " |")
    if files:
        lines += [f"| whole test/unseen songs (as `add` judges them) called music | {_pct(files['songs'])}; "
                  f"not: {', '.join(files['songs_wrong']) or 'none'} |",
                  f"| whole held-out sound files ≥ 3 s called non-music | {_pct(files['sounds'])}; "
                  f"not: {', '.join(files['sounds_wrong']) or 'none'} |"]
    return "\n".join(lines) + "\n"


def train_gate(corpus: Path, out: Path, benchmarks: Path | None, *, model_spec: str = "default",
               cache: Path | None = None, cfg: GateDataConfig = GateDataConfig(), whole_files: bool = True) -> dict:
    """Build the clips, choose the gate on validation, measure it on test, write it to ``out``
    and (unless ``benchmarks`` is None) its section of docs/BENCHMARKS.md. Returns the test figures."""
    from dataclasses import asdict, replace
    from datetime import date

    from tuneprint.encoder.checkpoint import load_model
    from tuneprint.encoder.embeddings import Embedder
    from tuneprint.server.gate import save_gate

    from .gate import select
    from .markdown import write_section

    model = load_model(model_spec)
    embedder = Embedder(model)
    sets = build_features(corpus, embedder, cfg, cache)
    selection = select(sets, model.model_id, model.features, model.net.cfg.embedding_dim)
    figures = measure(selection.gate, sets["test"])
    files = file_checks(selection.gate, embedder, corpus, cfg) if whole_files else {}
    counts = {split: {k: int((s.kind == k).sum()) for k in ("music", *NON_MUSIC_KINDS)} for split, s in sets.items()}
    val = next(scores for c, _, scores in selection.rows if c == selection.candidate)
    meta = {"model": asdict(selection.candidate), "trained": date.today().isoformat(),
            "data": {"corpus": str(corpus), "config": asdict(cfg), "clips": counts},
            "validation": val, "test": {"accuracy": figures["accuracy"][0],
                                        "music_missed": {c: v[0] for c, v in figures["music_missed"].items()}},
            "how": "scripts/train_gate.py; server/evaluation/gate_data.py says which clips"}
    gate = replace(selection.gate, meta=meta)
    save_gate(out, gate)
    log.info("gate written to %s (threshold %.3f)", out, gate.threshold)
    if benchmarks is not None:
        shown = out.resolve().relative_to(Path.cwd()) if out.resolve().is_relative_to(Path.cwd()) else out
        write_section(benchmarks, "gate", "Music / non-music gate", markdown(selection, figures, files, counts, shown))
    return {"figures": figures, "files": files, "selection": [(c.name, t, s) for c, t, s in selection.rows]}
