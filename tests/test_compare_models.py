"""server/evaluation/compare.py and scripts/compare_models.py: paired comparison of two benchmark JSONs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tuneprint.server.evaluation import compare

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_models.py"


def clip(i: int, condition: str, member: bool, truth: str, match: str | None, top: str | None = None) -> dict:
    return {"path": f"song{i}.ogg", "condition": condition, "start_s": float(i), "member": member,
            "truth": truth, "match": match, "top": top or match, "top_similarity": 0.9 if (top or match) else None}


def write(path: Path, clips: list[dict]) -> str:
    path.write_text(json.dumps(clips))
    return str(path)


def test_paired_counts_and_rates(tmp_path):
    base = [clip(0, "noise", True, "a", "a"), clip(1, "noise", True, "b", None, top="b"),
            clip(2, "noise", True, "c", None, top="x"), clip(3, "reverb", True, "d", "d"),
            clip(4, "clean", False, "e", None), clip(5, "noise", False, "f", "a")]
    new = [clip(0, "noise", True, "a", None, top="a"), clip(1, "noise", True, "b", "b"),
           clip(2, "noise", True, "c", "c"), clip(3, "reverb", True, "d", None, top="z"),
           clip(4, "clean", False, "e", None), clip(5, "noise", False, "f", None)]
    row = compare.compare("set", compare.load(write(tmp_path / "b.json", base)),
                          compare.load(write(tmp_path / "n.json", new)))
    assert row["noise_only_base"] == 1 and row["noise_only_new"] == 2
    assert row["base"]["noise_identified"] == pytest.approx(100 / 3)
    assert row["new"]["noise_identified"] == pytest.approx(200 / 3)
    assert row["base"]["noise_ranked_first"] == pytest.approx(200 / 3) and row["new"]["noise_ranked_first"] == 100
    assert row["base"]["reverb_identified"] == 100 and row["new"]["reverb_identified"] == 0
    assert row["base"]["outsiders_unknown"] == 50 and row["new"]["outsiders_unknown"] == 100


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_cli_writes_a_section_and_refuses_disjoint_clips(tmp_path):
    clips = [clip(0, "noise", True, "a", "a"), clip(1, "clean", False, "b", None)]
    write(tmp_path / "base-x.json", clips)
    write(tmp_path / "new-x.json", clips)
    out = tmp_path / "BENCH.md"
    args = ["--base", f"old={tmp_path}/base-{{}}.json", "--new", f"cand={tmp_path}/new-{{}}.json", "--sets", "x:label"]
    done = run_script(*args, "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "## Encoder cand against old" in text and "| `label` | 100.0 → **100.0** %" in text
    write(tmp_path / "new-y.json", [clip(7, "noise", True, "a", "a")])
    write(tmp_path / "base-y.json", clips)
    refused = run_script(*args[:-1], "y")
    assert refused.returncode != 0 and "share no clip" in refused.stderr
    refused = run_script("--base", "nopattern", "--new", "a={}", "--sets", "x")
    assert refused.returncode != 0 and "NAME=PATTERN" in refused.stderr


def test_disjoint_clips_and_bad_patterns_are_refused(tmp_path):
    with pytest.raises(compare.CompareError, match="share no clip"):
        compare.compare("set", compare.load(write(tmp_path / "b.json", [clip(0, "noise", True, "a", "a")])),
                        compare.load(write(tmp_path / "n.json", [clip(1, "noise", True, "a", "a")])))
    with pytest.raises(compare.CompareError, match="NAME=PATTERN"):
        compare.split_spec("nopattern")


def test_oracle_threshold_answers_the_asked_share_of_outsiders_unknown():
    outsiders = [{"top_similarity": s} for s in np.linspace(0.5, 0.8, 11)]  # 90 % quantile: 0.77
    members = [{"top": "a", "truth": "a", "top_similarity": 0.78}, {"top": "a", "truth": "a", "top_similarity": 0.76},
               {"top": "b", "truth": "a", "top_similarity": 0.95}]
    assert compare.oracle_hits(members, outsiders) == pytest.approx(100 / 3)


def test_oracle_threshold_is_on_the_evidence_for_verified_clips():
    outsiders = [{"top_similarity": s, "top_verified": 0.1} for s in np.linspace(0.5, 0.8, 11)]  # evidence ≤ 0.85
    members = [{"top": "a", "truth": "a", "top_similarity": 0.70, "top_verified": 0.9},  # evidence 1.06
               {"top": "a", "truth": "a", "top_similarity": 0.78, "top_verified": None}]  # 0.78: not verified
    assert compare.oracle_hits(members, outsiders) == pytest.approx(50.0)  # on similarity: 0.78 passes
    assert compare.oracle_hits(members, outsiders, verify_weight=0.4) == pytest.approx(50.0)  # 1.06 passes
    assert compare.decision_value(members[0], 0.4) == pytest.approx(1.06)


def test_each_model_oracle_uses_its_own_verify_weight(tmp_path):
    def clips(verified: float) -> list[dict]:
        members = [dict(clip(i, "noise", True, "a", "a"), top_similarity=0.6, top_verified=verified) for i in range(2)]
        outsiders = [dict(clip(10 + i, "clean", False, "o", None, top="x"), top_similarity=s, top_verified=0.0)
                     for i, s in enumerate(np.linspace(0.5, 0.8, 11))]
        return members + outsiders

    base = compare.load(write(tmp_path / "b.json", clips(1.0)))
    new = compare.load(write(tmp_path / "n.json", clips(1.0)))
    row = compare.compare("set", base, new, 0.0, 0.5)  # members' evidence: 0.6 (base) and 1.1 (new)
    assert row["base"]["noise_identified_oracle_90"] == 0 and row["new"]["noise_identified_oracle_90"] == 100
