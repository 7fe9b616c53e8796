"""Analysis of the generator budget curves (`scripts/generator_curves.py`, issue 17): where each family stops
improving, and whether a profile's `gen_steps` stops it there.

The curves table has a row per (variant, budget, training seed): validation FID in the domain feature space, recall,
and, where scored, validation CAS (one classifier seed per budget). Two readings, both on validation only:

- FID: the plateau is the smallest budget that no larger budget improves by more than `FID_TOLERANCE` (relative).
  FID has no seed CI here (one fit per budget), so the tolerance is a stated convention, not a test.
- CAS: one classifier seed per budget, so two budgets differ beyond seed noise only by more than
  `cas_seed_noise` (1.96·√2·sd of the CAS seeds of the same family at the profile's budget, from the generators
  notebook). A profile's stop is below the plateau where a larger budget beats it by more than that noise: the
  budget check's rule ("twice the budget moves validation accuracy by less than the CI") read along the curve. One
  seed resolves only large gaps (paper's flow: ±4 pts), so "at its plateau by CAS" is weak evidence; FID, which
  moves monotonically with the budget here, says whether the generator itself still improves.

`findings` writes one sentence per variant; tests/test_analysis_generators.py plants a curve with a known plateau.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

# A doubling that cuts FID by less than 10% counts as flat (convention: measured on paper, the flow's doublings
# cut it by 35%, 22%, 15% between 4,000 and 32,000 steps, the cVAE's by under 3% from 1,000 on).
FID_TOLERANCE = 0.10


def cas_seed_noise(values) -> float:
    """How far apart two single-seed CAS values (fractions) can lie by seed noise alone, at 95%: 1.96·√2·sd, with sd
    the spread across seeds of the same arm. NaN with fewer than two seeds."""
    values = np.asarray(values, dtype=float)
    return float(1.96 * math.sqrt(2) * values.std(ddof=1)) if len(values) >= 2 else math.nan


def cas_means(table: pd.DataFrame) -> pd.Series:
    """The validation CAS of each row (the mean over its classifier seeds; NaN where not scored)."""
    def mean(cell) -> float:       # "0.8226 0.8301" (several seeds), 0.8226 (one, read as a number) or empty
        values = [float(v) for v in str(cell).split()] if pd.notna(cell) else []
        return float(np.mean(values)) if values else math.nan
    return table["cas_val"].map(mean) if "cas_val" in table else pd.Series(math.nan, index=table.index)


def plateau_budget(steps, values, tolerance: float, relative: bool, lower_is_better: bool) -> int | None:
    """The smallest budget that no larger budget improves on by more than `tolerance` (relative to its value where
    `relative`); None where only the largest budget qualifies, since nothing beyond it was measured."""
    order = np.argsort(steps)
    steps, values = np.asarray(steps)[order], np.asarray(values, dtype=float)[order]
    for i in range(len(steps) - 1):
        if math.isnan(values[i]):
            continue
        later = values[i + 1:][~np.isnan(values[i + 1:])]
        if not len(later):
            return None
        gain = (values[i] - later.min()) if lower_is_better else (later.max() - values[i])
        if gain <= tolerance * (abs(values[i]) if relative else 1.0):
            return int(steps[i])
    return None


def plateaus(table: pd.DataFrame, cas_noise: dict | None = None) -> list[dict]:
    """Per variant (first training seed): its budgets with FID, recall and validation CAS at each, the FID plateau
    budget (None: not reached within the measured budgets) and the CAS seed noise (NaN: CAS not scored at two
    budgets, or no estimate for the family)."""
    cas_noise = cas_noise or {}
    rows = []
    table = table.assign(cas=cas_means(table))
    first = table[table["gen_seed"] == table.groupby("generator")["gen_seed"].transform("min")]
    for variant, curve in first.sort_values("gen_steps").groupby("generator", sort=False):
        family = curve["family"].iloc[0]
        noise = cas_noise.get(family, math.nan)
        scored = curve["cas"].notna().sum() >= 2
        rows.append({"generator": variant, "family": family, "budgets": curve["gen_steps"].tolist(),
                     "fid": curve["fid"].tolist(), "recall": curve["recall"].tolist(), "cas": curve["cas"].tolist(),
                     "fid_plateau": plateau_budget(curve["gen_steps"], curve["fid"], FID_TOLERANCE, relative=True,
                                                   lower_is_better=True),
                     "cas_noise": noise if scored else math.nan})
    return rows


def _at(row, steps: int, key: str) -> float:
    return row[key][row["budgets"].index(steps)] if steps in row["budgets"] else math.nan


def _stop_verdict(row: dict, stop: int) -> str:
    """Whether a profile's stop is at the plateau: by CAS where scored there and a seed-noise estimate exists (the
    budget check's rule: does any larger budget beat it beyond noise?), else by FID."""
    cas, noise = _at(row, stop, "cas"), row["cas_noise"]
    later = [(c, b) for c, b in zip(row["cas"], row["budgets"]) if b > stop and not math.isnan(c)]
    if not math.isnan(cas) and not math.isnan(noise) and later:
        best, where = max(later)
        if best - cas > noise:
            return (f"below its plateau: {where:,} steps scores {100 * (best - cas):+.1f} pts validation CAS, "
                    f"beyond one-seed noise (±{100 * noise:.1f})")
        return f"at its plateau by CAS (no larger budget better beyond one-seed noise, ±{100 * noise:.1f} pts)"
    if row["fid_plateau"] is not None and stop >= row["fid_plateau"]:
        return "at its FID plateau"
    return f"below its FID plateau (FID {_at(row, stop, 'fid'):.2f} there)"


def findings(table: pd.DataFrame, stops: dict, cas_noise: dict | None = None,
             real_val: float | None = None) -> list[str]:
    """One sentence per variant: how FID (and CAS, where scored) moves along its budgets, where FID flattens, and
    whether each profile's stop (`stops`: {profile: gen_steps}) is at its plateau (`_stop_verdict`). `real_val`:
    the real arm's validation accuracy (fraction), for the CAS ratio at the largest budget."""
    lines = []
    for row in plateaus(table, cas_noise):
        budgets, family = row["budgets"], row["family"]
        first, last = budgets[0], budgets[-1]
        text = (f"{row['generator']}: validation FID {row['fid'][0]:.2f} at {first:,} steps → {row['fid'][-1]:.2f} "
                f"at {last:,}, recall {row['recall'][0]:.2f} → {row['recall'][-1]:.2f}; FID ")
        text += (f"flat (no larger budget better by > {FID_TOLERANCE:.0%}) from {row['fid_plateau']:,} steps"
                 if row["fid_plateau"] else f"still improving by > {FID_TOLERANCE:.0%} at {last:,} steps")
        cas = [c for c in row["cas"] if not math.isnan(c)]
        if cas:
            text += f"; validation CAS (one seed per budget) {100 * cas[0]:.1f} → {100 * cas[-1]:.1f}%"
            if real_val:
                text += f" ({cas[-1] / real_val:.3f} of real's {100 * real_val:.2f}%)"
        for profile, gen_steps in stops.items():
            stop = gen_steps.get(family)
            if stop is None or stop not in budgets:
                continue
            text += f"; {profile} stops at {stop:,}: " + _stop_verdict(row, stop)
        lines.append(text + ".")
    return lines


def cas_reference(cas_table: pd.DataFrame) -> tuple[dict, float | None]:
    """From the generators notebook's CAS cells (metrics.csv): each family's one-seed CAS noise (`cas_seed_noise`
    of its validation CAS over seeds) and the real arm's mean validation accuracy (None without a real arm)."""
    main = cas_table[cas_table["budget_factor"].isna() | (cas_table["budget_factor"] == 1)] \
        if "budget_factor" in cas_table else cas_table
    real = main[main["arm"] == "real"]["val_accuracy"]
    noise = {family: cas_seed_noise(rows["val_accuracy"])
             for family, rows in main[main["arm"] != "real"].groupby("generator")}
    return noise, (float(real.mean()) if len(real) else None)


def profile_findings(profile: str) -> list[str]:
    """`findings` for a profile's committed or local records: results/<profile>/generator_curves/curves.csv, with
    the seed noise and the real arm from results/<profile>/generators/metrics.csv where that run exists, and the
    profile's own stop points (`gen_steps`). Empty where the curves have not been run for the profile."""
    from . import config, runs
    root = runs.results_root() / profile
    curves = root / "generator_curves" / "curves.csv"
    if not curves.is_file():
        return []
    cas = root / "generators" / "metrics.csv"
    noise, real_val = cas_reference(pd.read_csv(cas)) if cas.is_file() else ({}, None)
    return findings(pd.read_csv(curves), {profile: config.load_profile(profile)["gen_steps"]}, noise, real_val)
