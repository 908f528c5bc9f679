"""Two encoders compared clip by clip from their benchmark JSONs (:mod:`.benchmark`, the same clip seed,
so the same clips).

For every set (a noise bank, say): noisy clips identified, the right song ranked first, phone and
reverberant clips identified and outsiders answered "unknown", with the paired count of noisy
clips only one of the two models identified, and the noisy clips each model would identify at the
threshold that answers exactly 90 % of these outsiders "unknown" (an oracle: what a perfect
calibration could reach, for diagnosis only; for clips whose top song was verified, the threshold
is on the evidence, similarity + verify weight × verified share).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class CompareError(ValueError):
    """A benchmark JSON cannot be read, or two share no clip."""


def split_spec(spec: str) -> tuple[str, str]:
    """``NAME=PATTERN`` (with ``{}`` in the pattern, for the set name) → (name, pattern)."""
    name, sep, pattern = spec.partition("=")
    if not sep or "{}" not in pattern:
        raise CompareError(f"expected NAME=PATTERN with {{}} in the pattern, got {spec!r}")
    return name, pattern


def load(path: str) -> dict[tuple, dict]:
    """A benchmark JSON's clips by (path, condition, start, member)."""
    try:
        clips = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CompareError(f"cannot read benchmark JSON {path}: {err}") from err
    return {(c["path"], c["condition"], c["start_s"], c["member"]): c for c in clips}


def rate(clips: list[dict], hit) -> float:
    return 100.0 * sum(map(hit, clips)) / max(1, len(clips))


def compare(name: str, base: dict, new: dict, base_weight: float = 0.0, new_weight: float = 0.0) -> dict:
    """Figures of both models on the clips both JSONs hold; each model's oracle uses its own verify weight."""
    shared = [k for k in base if k in new]
    if not shared:
        raise CompareError(f"{name}: the two JSONs share no clip (different clip seeds?)")
    identified = lambda c: c["match"] == c["truth"]  # noqa: E731
    row = {"set": name, "clips": len(shared)}
    weights = {"base": base_weight, "new": new_weight}
    for label, runs in (("base", base), ("new", new)):
        pick = lambda cond, member=True: [runs[k] for k in shared if k[1] == cond and k[3] == member]  # noqa: E731
        outsiders = [runs[k] for k in shared if not k[3]]
        row[label] = {
            "noise_identified": rate(pick("noise"), identified),
            "noise_ranked_first": rate(pick("noise"), lambda c: c["top"] == c["truth"]),
            "reverb_identified": rate(pick("reverb"), identified),
            "phone_identified": rate(pick("phone"), identified),
            "outsiders_unknown": rate(outsiders, lambda c: c["match"] is None),
            "noise_identified_oracle_90": oracle_hits(pick("noise"), outsiders, verify_weight=weights[label]),
        }
    noisy = [k for k in shared if k[1] == "noise" and k[3]]
    row["noise_only_base"] = sum(identified(base[k]) and not identified(new[k]) for k in noisy)
    row["noise_only_new"] = sum(identified(new[k]) and not identified(base[k]) for k in noisy)
    return row


def oracle_hits(members: list[dict], outsiders: list[dict], unknown: float = 0.90, verify_weight: float = 0.0) -> float:
    """Members identified at the threshold (on the similarity, or on the evidence where the top song
    was verified) that answers exactly ``unknown`` of these outsiders "unknown": what a perfect
    calibration could reach (a diagnosis, never a setting)."""
    if not outsiders:
        return float("nan")
    threshold = float(np.quantile([decision_value(c, verify_weight) for c in outsiders], unknown))
    return rate(members, lambda c: c["top"] == c["truth"] and decision_value(c, verify_weight) >= threshold)


def decision_value(clip: dict, verify_weight: float) -> float:
    """What the "unknown" bar was compared with: similarity, plus the weighted verified share if verified."""
    return (clip["top_similarity"] or 0.0) + verify_weight * (clip.get("top_verified") or 0.0)


def table(rows: list[dict], base: str, new: str) -> str:
    """The comparison as a markdown table, one row per set."""
    pair = lambda r, key: f"{r['base'][key]:.1f} → **{r['new'][key]:.1f}**"  # noqa: E731
    lines = [f"| noise set | noisy identified ({base} → {new}) | noisy clips only {base} / only {new} identified "
             f"| right song ranked first | identified at 90 % unknown (oracle) | phone | reverb | outsiders \"unknown\" |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| `{r['set']}` | {pair(r, 'noise_identified')} % | {r['noise_only_base']} / {r['noise_only_new']} "
                     f"| {pair(r, 'noise_ranked_first')} % | {pair(r, 'noise_identified_oracle_90')} % "
                     f"| {pair(r, 'phone_identified')} % "
                     f"| {pair(r, 'reverb_identified')} % | {pair(r, 'outsiders_unknown')} % |")
    return "\n".join(lines) + "\n"


def compare_sets(base: str, new: str, sets: list[tuple[str, str]], weights: tuple[float, float]) -> list[dict]:
    """:func:`compare` for every (name, label) of ``sets``, ``{}`` in the ``base`` and ``new`` patterns
    replaced by the name."""
    return [compare(label or name, load(base.format(name)), load(new.format(name)), *weights) for name, label in sets]
