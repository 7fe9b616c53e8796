"""Analysis of the generator budget curves (`scripts/generator_curves.py`, issue 17): where each family's FID
flattens, and whether a profile's `gen_steps` leaves validation CAS on the table.

The curves table has a row per (variant, budget, training seed): validation FID in the domain feature space, recall,
and, where scored, validation CAS (`cas_val`: one value per classifier seed). Both readings are on validation only:

- FID: flat from the smallest budget that no larger budget improves by more than `FID_TOLERANCE` (relative),
  with at least `FID_MIN_LATER` larger budgets measured. One fit per budget gives FID no CI here, so the
  tolerance is a stated convention, not a test.
- CAS at the stop against CAS at the largest budget measured (fixed in advance, so one comparison, not a search
  over budgets): the stop's values are the generators notebook's CAS seeds at that budget (n of them), the largest
  budget's are the curve's (k); the difference is beyond noise when it exceeds t(0.975, n−1)·sd·√(1/n + 1/k), sd the
  notebook's seed spread — a two-sample t bound with the notebook's variance. The noise is that of classifier seeds
  and pools on one fitted generator: each budget is its own fit, whose spread this leaves out, so the bound is
  optimistic and a shortfall near it is weak evidence. Within the bound the reading is "inconclusive", never
  "at the plateau".

`findings` writes one sentence per variant; tests/test_analysis_generators.py plants curves.

A variant (`--config`, e.g. the cGAN with mode seeking) is judged against its family's default settings by
`variant_comparisons`: validation CAS at the same budget and training seed, paired on the classifier seed (which
fixes the pool's draw, the classifier's init and its batch order in both arms), every pair in one Holm family, with
an equivalence test at the profile's margin. Each arm is one fit, so a difference is the two fits' difference: the
fits' own spread is not counted, and "higher" means "this fit beats that one beyond classifier noise", not yet
"the setting is better" (more `--gen-seeds` would say that).

Issue 17's "cGAN without collapse" is read by `collapse_readings`: recall ≥ `RECALL_TARGET` *and* coverage at least
the defaults' at the same budget and training seed, since a spread that adds no mode raises recall alone
(scripts/prdc_controls.py plants one). One sample per fit, no CI: a description with a planted control, not a test.

The flow's sampler and budget rows (`scripts/flow_sampler_cas.py`, results/<profile>/flow_samplers) answer the
issue's "CAS ≥ 0.95 × real": `best_sampler` picks the row with the highest validation CAS among those with at least
`BEST_MIN_SEEDS` seeds (validation chooses), and `share_of_real` judges its share of the real arm twice — on
validation, where it was chosen (biased up by the choice), and on test, which chose nothing and so is the honest
check. Each is a Welch t interval on mean(CAS) − target·mean(real): "at least" when its lower end is above 0,
"below" when its upper end is under 0, "inconclusive" otherwise.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import metrics
from .analysis_scaling import main_cells

# A budget from which no larger budget cuts FID by more than 10% counts as flat (a convention; measured on paper,
# the flow's doublings cut it by 35%, 22%, 15% between 4,000 and 32,000 steps, the cVAE's by under 3% from 1,000 on).
FID_TOLERANCE = 0.10
FID_MIN_LATER = 2             # one later budget alone cannot show a flat stretch
CAS_TARGET = 0.95             # issue 17: the best family's CAS at least 0.95 of the real arm's
RECALL_TARGET = 0.3           # issue 17: a cGAN without within-class collapse reaches this recall at N=all
BEST_MIN_SEEDS = 3            # a sampler chosen as best must have a seed spread to judge it by


def cas_values(cell) -> list[float]:
    """A `cas_val` cell as numbers: "0.8226 0.8301" (several classifier seeds), 0.8226 (one, read by pandas as a
    number) or empty (not scored)."""
    return [float(v) for v in str(cell).split()] if pd.notna(cell) and str(cell).strip() else []


def cas_means(table: pd.DataFrame) -> pd.Series:
    """The validation CAS of each row (the mean over its classifier seeds; NaN where not scored)."""
    if "cas_val" not in table:
        return pd.Series(math.nan, index=table.index)
    return table["cas_val"].map(lambda cell: float(np.mean(cas_values(cell))) if cas_values(cell) else math.nan)


def first_seed(table: pd.DataFrame) -> pd.DataFrame:
    """Each variant's rows of its first training seed (the curve; other seeds measure the fit's spread)."""
    return table[table["gen_seed"] == table.groupby("generator")["gen_seed"].transform("min")]


def plateau_budget(steps, values, tolerance: float, min_later: int = FID_MIN_LATER) -> int | None:
    """The smallest budget (of at least `min_later` larger measured ones) that no larger budget lowers by more than
    `tolerance` of its value; None where no budget qualifies."""
    steps, values = np.asarray(steps), np.asarray(values, dtype=float)
    if len(steps) != len(values):
        raise ValueError(f"steps ({len(steps)}) and values ({len(values)}) must have the same length")
    if not tolerance >= 0:
        raise ValueError(f"tolerance={tolerance!r}: allowed: a number >= 0")
    order = np.argsort(steps)
    steps, values = steps[order], values[order]
    for i in range(len(steps)):
        later = values[i + 1:][~np.isnan(values[i + 1:])]
        if math.isnan(values[i]) or len(later) < min_later:
            continue
        if values[i] - later.min() <= tolerance * abs(values[i]):
            return int(steps[i])
    return None


def cas_shortfall(at_stop, at_largest, confidence: float = 0.95) -> tuple[float, float]:
    """(mean CAS at the largest budget − mean at the stop, the noise bound t·sd·√(1/n + 1/k)) with sd and the
    degrees of freedom from the stop's n seeds; the bound is NaN with fewer than two seeds or no spread."""
    at_stop, at_largest = np.asarray(at_stop, dtype=float), np.asarray(at_largest, dtype=float)
    difference = float(at_largest.mean() - at_stop.mean())
    sd = at_stop.std(ddof=1) if len(at_stop) >= 2 else math.nan
    if not sd > 0:                              # no spread measured: no estimate of the noise, not zero noise
        return difference, math.nan
    t = stats.t.ppf(0.5 + confidence / 2, len(at_stop) - 1)
    return difference, float(t * sd * math.sqrt(1 / len(at_stop) + 1 / len(at_largest)))


def cas_reference(cas_table: pd.DataFrame) -> tuple[dict, float | None]:
    """From the generators notebook's CAS cells (metrics.csv, or its table in memory): each family's validation CAS
    per seed at the notebook's budget, and the real arm's mean validation accuracy (None without a real arm)."""
    main = main_cells(cas_table)
    real = main[main["arm"] == "real"]["val_accuracy"]
    seeds = {family: rows["val_accuracy"].tolist() for family, rows in main[main["arm"] != "real"].groupby("generator")}
    return seeds, (float(real.mean()) if len(real) else None)


def share_of_real(synthetic, real, target: float = CAS_TARGET, confidence: float = 0.95) -> dict:
    """Is mean(synthetic) at least `target` × mean(real)? Welch's t interval on mean(synthetic) − target·mean(real)
    (different classifiers on different data: unpaired, unequal variances). Returns the ratio of the means, the
    difference, its interval and the verdict ("at least", "below", "inconclusive"; "inconclusive" also where fewer
    than two values on a side give no spread)."""
    synthetic, real = np.asarray(synthetic, dtype=float), np.asarray(real, dtype=float)
    if not len(synthetic) or not len(real):
        raise ValueError(f"share_of_real needs values on both sides, got {len(synthetic)} synthetic, {len(real)} real")
    if not 0 < target <= 1:
        raise ValueError(f"target={target!r}: allowed: a share in (0, 1]")
    difference = float(synthetic.mean() - target * real.mean())
    out = {"ratio": float(synthetic.mean() / real.mean()), "difference": difference, "ci_low": math.nan,
           "ci_high": math.nan, "verdict": "inconclusive"}
    if len(synthetic) < 2 or len(real) < 2:
        return out
    var_s, var_r = synthetic.var(ddof=1) / len(synthetic), target ** 2 * real.var(ddof=1) / len(real)
    se = math.sqrt(var_s + var_r)
    if not se > 0:                              # no spread measured: no estimate of the noise, not zero noise
        return out
    df = (var_s + var_r) ** 2 / (var_s ** 2 / (len(synthetic) - 1) + var_r ** 2 / (len(real) - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    out.update(ci_low=difference - half, ci_high=difference + half,
               verdict="at least" if difference - half > 0 else "below" if difference + half < 0 else "inconclusive")
    return out


def format_share_interval(share: dict) -> str:
    """'+0.37 [+0.02, +0.72] pts': a `share_of_real` difference from the target share and its interval, in points."""
    return (f"{100 * share['difference']:+.2f} [{100 * share['ci_low']:+.2f}, {100 * share['ci_high']:+.2f}] "
            f"pts")


def family_shares(cas_table: pd.DataFrame, split: str = "test", target: float = CAS_TARGET) -> dict:
    """{family: (`share_of_real` of its CAS seeds against the real arm's on `split`, their mean, their number)} from the
    generators notebook's CAS cells (metrics.csv, or its table in memory); {} without a real arm or that split."""
    main = main_cells(cas_table)
    column = f"{split}_accuracy"
    if column not in main:
        return {}
    real = main[main["arm"] == "real"][column]
    if real.empty:
        return {}
    return {family: (share_of_real(rows[column], real, target), float(rows[column].mean()), len(rows))
            for family, rows in main[main["arm"] != "real"].groupby("generator")}


DEFAULT_CONFIG = "{}"            # the `config` column of a family's rows at its default settings
DEFAULTS_ARM = "(defaults)"      # their arm's name inside `variant_comparisons` (not a name a --label can clash with)


def cas_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The curves' CAS as tidy rows: one per (variant, budget, training seed, classifier seed) with its validation
    and test CAS (`cas_seeds`, `cas_val` and `cas_test` hold one value per classifier seed, space-separated)."""
    rows = []
    for row in table.to_dict("records"):
        val = cas_values(row.get("cas_val"))
        if not val:
            continue
        seeds, test = [int(s) for s in cas_values(row.get("cas_seeds"))], cas_values(row.get("cas_test"))
        if len(seeds) != len(val) or len(test) not in (0, len(val)):
            raise ValueError(f"{row['generator']} at {row['gen_steps']} steps: {len(seeds)} cas_seeds for "
                             f"{len(val)} cas_val and {len(test)} cas_test values; allowed: one of each per seed")
        for i, (seed, value) in enumerate(zip(seeds, val)):
            rows.append({"generator": row["generator"], "family": row["family"], "config": row["config"],
                         "gen_steps": int(row["gen_steps"]), "gen_seed": int(row["gen_seed"]), "seed": seed,
                         "val_accuracy": value, "test_accuracy": test[i] if test else math.nan})
    return pd.DataFrame(rows, columns=["generator", "family", "config", "gen_steps", "gen_seed", "seed",
                                       "val_accuracy", "test_accuracy"])


def variant_comparisons(table: pd.DataFrame, margin: float, alpha: float = 0.05) -> pd.DataFrame:
    """Every variant with validation CAS against its family's default settings (`config` "{}") at the same budget
    and training seed, paired on the classifier seed, all in one Holm family (`metrics.paired_comparisons`, TOST at
    `margin`). Returns its rows (`generator` the variant, `reference` the defaults' variant name), with each arm's
    recall and coverage beside them (recall alone rewards a scattered sample: scripts/prdc_controls.py); empty where
    no variant shares a scored budget with its defaults."""
    if "config" not in table:
        return metrics.with_verdicts(pd.DataFrame())
    cells = cas_cells(table)
    within = ["family", "gen_steps", "gen_seed"]
    is_default = cells["config"] == DEFAULT_CONFIG
    compared = cells[~is_default].groupby(within).size().index          # groups that hold a variant
    references = cells[is_default].groupby(within)["generator"].unique()
    references = references[references.index.isin(compared)]
    for (_, steps, seed), names in references.items():
        if len(names) > 1:
            raise ValueError(f"several default-settings variants scored at {steps:,} steps (training seed {seed}) "
                             f"beside a variant: {sorted(names)}; allowed: one per family, budget and seed")
    # the defaults under one arm name, so the study's helper pairs every group's variants against them at once
    arms = cells.assign(arm=cells["generator"].where(~is_default, DEFAULTS_ARM))
    arms = arms[arms.set_index(within).index.isin(compared)]
    out = metrics.paired_comparisons(arms, "val_accuracy", "arm", DEFAULTS_ARM, within=within, margin=margin,
                                     alpha=alpha)
    if out.empty:
        return out
    out = out.rename(columns={"arm": "generator"})
    out["reference"] = [references[key][0] for key in zip(out["family"], out["gen_steps"], out["gen_seed"])]
    out["holm_family"] = int(out["p"].notna().sum())          # the tests Holm corrected over (one pair: no test)
    indexed = table.set_index(["generator", "gen_steps", "gen_seed"])
    for metric in ("recall", "coverage"):
        values = indexed[metric] if metric in indexed else pd.Series(dtype=float)
        for column, arm in ((metric, "generator"), (f"reference_{metric}", "reference")):
            out[column] = [values.get(key, math.nan) for key in zip(out[arm], out["gen_steps"], out["gen_seed"])]
    return out


def variant_findings(comparisons: pd.DataFrame) -> list[str]:
    """One sentence per `variant_comparisons` row: the paired CAS difference, its verdict, and both arms' recall."""
    lines = []
    for row in comparisons.to_dict("records"):
        if math.isnan(row["p"]):
            test = f"{row['pairs']} classifier seed paired: not tested"
        else:
            test = (f"{row['pairs']} classifier seeds paired, Holm over {row['holm_family']}, equivalence margin "
                    f"±{100 * row['margin']:.1f} pts")
        lines.append(f"{row['generator']} against {row['reference']} at {row['gen_steps']:,} steps (training seed "
                     f"{row['gen_seed']}): validation CAS {metrics.format_difference(row)}, {test}; recall "
                     f"{row['recall']:.2f} against {row['reference_recall']:.2f}, coverage {row['coverage']:.2f} "
                     f"against {row['reference_coverage']:.2f}. One fit per arm: the fits' own spread is not "
                     f"counted.")
    return lines


def collapse_readings(table: pd.DataFrame, family: str = "cgan", target: float = RECALL_TARGET) -> pd.DataFrame:
    """Issue 17's test of within-class collapse for every `family` row of the curves: recall at least `target`
    **and** coverage at least the family's default settings' at the same budget and training seed. Recall alone can
    be bought by spread (scripts/prdc_controls.py: the cGAN's latents scaled by 1.25 at sampling lift recall
    0.26 -> 0.33 while coverage falls), coverage cannot, so a row that meets the recall target with less coverage
    than the defaults reads "recall by spread", not "meets". Returns generator, gen_steps, gen_seed, recall,
    coverage, reference_coverage (NaN where the defaults were not fitted at that budget and seed) and verdict:
    "meets", "recall by spread", "short of recall", or "no reference" (recall met, defaults not measured there).
    One sample of `quality_samples` images per row, no CI: coverage's binomial SE on 5,000 validation images is
    about 0.006, and the fits' own spread is not counted (one fit per variant and budget)."""
    columns = ["generator", "gen_steps", "gen_seed", "recall", "coverage", "reference_coverage", "verdict"]
    rows = table[table["family"] == family] if "family" in table else table.iloc[:0]
    if rows.empty or "coverage" not in rows:
        return pd.DataFrame(columns=columns)
    config = rows["config"] if "config" in rows else pd.Series(DEFAULT_CONFIG, index=rows.index)
    defaults = rows[config == DEFAULT_CONFIG]
    keyed = defaults.groupby(["gen_steps", "gen_seed"])
    several = keyed["generator"].nunique()
    if (several > 1).any():
        steps, seed = several[several > 1].index[0]
        raise ValueError(f"{family}: several default-settings rows at {steps:,} steps (training seed {seed}): "
                         f"{sorted(keyed.get_group((steps, seed))['generator'])}; allowed: one per budget and seed")
    reference = keyed["coverage"].first()
    out = rows[["generator", "gen_steps", "gen_seed", "recall", "coverage"]].copy()
    out["reference_coverage"] = [reference.get(key, math.nan) for key in zip(out["gen_steps"], out["gen_seed"])]
    verdicts = []
    for recall, coverage, ref in zip(out["recall"], out["coverage"], out["reference_coverage"]):
        if recall < target:
            verdicts.append("short of recall")
        elif math.isnan(ref):
            verdicts.append("no reference")
        else:
            verdicts.append("meets" if coverage >= ref else "recall by spread")
    out["verdict"] = verdicts
    return out.sort_values(["gen_steps", "generator", "gen_seed"]).reset_index(drop=True)[columns]


def collapse_finding(readings: pd.DataFrame, family: str = "cgan", target: float = RECALL_TARGET) -> str:
    """One sentence from `collapse_readings`: which rows meet the target, or that none does and how close the best
    recall came (with its coverage against the defaults'); empty without rows."""
    if readings.empty:
        return ""
    criterion = (f"recall ≥ {target:g} with coverage at least the defaults' at the same budget (validation; one fit "
                 f"per row, no CI)")
    meets = readings[readings["verdict"] == "meets"]
    if len(meets):
        named = "; ".join(f"{r.generator} at {r.gen_steps:,} steps (recall {r.recall:.2f}, coverage "
                          f"{r.coverage:.2f} against {r.reference_coverage:.2f})" for r in meets.itertuples())
        return f"{family} without collapse ({criterion}): met by {named}."
    best = readings.loc[readings["recall"].idxmax()]
    against = ("" if math.isnan(best["reference_coverage"])
               else f" against the defaults' {best['reference_coverage']:.2f}")
    return (f"{family} without collapse ({criterion}): not met by any of {len(readings)} rows; the highest recall is "
            f"{best['generator']} at {int(best['gen_steps']):,} steps, {best['recall']:.2f}, coverage "
            f"{best['coverage']:.2f}{against} ({best['verdict']}).")


def sampler_rows(folder) -> pd.DataFrame:
    """Every row `scripts/flow_sampler_cas.py` recorded under `folder` (its cas-*.csv files, one per invocation);
    empty where none. A sampler and seed recorded in two files is refused: comparisons pair exactly one row per
    seed."""
    files = sorted(Path(folder).glob("cas-*.csv"))
    if not files:
        return pd.DataFrame(columns=["sampler", "seed", "val_accuracy", "test_accuracy", "acceptance"])
    table = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    if "acceptance" not in table:               # files written before the filter existed
        table["acceptance"] = math.nan
    repeated = table[table.duplicated(["sampler", "seed"], keep=False)]
    if len(repeated):
        raise ValueError(f"{folder}: sampler {repeated['sampler'].iloc[0]!r} seed {repeated['seed'].iloc[0]} is "
                         f"recorded in more than one file; keep one (the comparison pairs exactly one row per seed)")
    return table


def best_sampler(samplers: pd.DataFrame, min_seeds: int = BEST_MIN_SEEDS) -> pd.DataFrame:
    """The rows of the sampler (flow_sampler_cas's full name) with the highest mean validation CAS among those with
    at least `min_seeds` seeds; empty where none has. Chosen on validation only."""
    counts = samplers.groupby("sampler")["seed"].nunique()
    eligible = samplers[samplers["sampler"].isin(counts[counts >= min_seeds].index)]
    if eligible.empty:
        return eligible
    best = eligible.groupby("sampler")["val_accuracy"].mean().idxmax()
    return samplers[samplers["sampler"] == best]


def best_sampler_reading(samplers: pd.DataFrame, cas_table: pd.DataFrame, target: float = CAS_TARGET) -> str:
    """One sentence: the best sampler on validation (`best_sampler`), its CAS as a share of the real arm's
    (the generators notebook's CAS cells) on validation (where it was chosen) and on test (which chose nothing),
    each with `share_of_real`'s verdict against `target`; empty without an eligible sampler or a real arm."""
    rows = best_sampler(samplers)
    main = main_cells(cas_table)
    real = main[main["arm"] == "real"]
    if rows.empty or real.empty:
        return ""
    counts = samplers.groupby("sampler")["seed"].nunique()
    parts = []
    for split in ("val", "test"):
        share = share_of_real(rows[f"{split}_accuracy"], real[f"{split}_accuracy"], target)
        where = "validation, where it was chosen" if split == "val" else "test, which chose nothing"
        parts.append(f"{where}: {100 * rows[f'{split}_accuracy'].mean():.2f}% against real's "
                     f"{100 * real[f'{split}_accuracy'].mean():.2f}%, {share['ratio']:.3f} of real — "
                     f"{share['verdict']} {target:g}× real ({format_share_interval(share)} over {target:g}× real)")
    return (f"best flow sampler on validation CAS ({(counts >= BEST_MIN_SEEDS).sum()} with ≥ {BEST_MIN_SEEDS} seeds, "
            f"scripts/flow_sampler_cas.py): {rows['sampler'].iloc[0]}, {len(rows)} seeds; " + "; ".join(parts))


def _seeds_text(cas_cells) -> str:
    """How many classifier seeds each scored budget's CAS averages: 'one classifier seed per budget', or a range."""
    counts = sorted({len(cas_values(c)) for c in cas_cells} - {0})
    if counts == [1]:
        return "one classifier seed per budget"
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"mean of {span} classifier seeds per budget"


def _fid_reading(budgets, plateau) -> str:
    if plateau is not None:
        return f"FID flat (no larger budget better by > {FID_TOLERANCE:.0%}) from {plateau:,} steps"
    return f"FID not flat within {budgets[-1]:,} steps (a larger budget beats each earlier one by > " \
           f"{FID_TOLERANCE:.0%}, or fewer than {FID_MIN_LATER} larger ones were measured)"


def _stop_reading(budgets, fids, cas_cells, plateau, stop: int, stop_seeds) -> str:
    """The FID reading at a profile's stop, and the CAS comparison with the largest budget where both are scored."""
    fid_at_stop = fids[budgets.index(stop)]
    if stop == budgets[-1]:
        text = "no larger budget measured"
    elif plateau is not None and stop >= plateau:
        text = f"FID flat there ({fid_at_stop:.2f})"
    else:
        text = f"FID still falls after it ({fid_at_stop:.2f} → {fids[-1]:.2f} at {budgets[-1]:,})"
    largest = cas_values(cas_cells[-1])
    at_stop = list(stop_seeds) or cas_values(cas_cells[budgets.index(stop)])
    if stop != budgets[-1] and largest and at_stop:
        difference, bound = cas_shortfall(at_stop, largest)
        where = f"{budgets[-1]:,} steps scores {100 * difference:+.2f} pts validation CAS over the stop's " \
                f"{len(at_stop)}-seed mean"
        if math.isnan(bound):
            text += f"; {where}, with no seed spread to judge it"
        elif difference > bound:
            text += f"; short of the largest budget: {where}, beyond seed noise (±{100 * bound:.2f}, classifier seeds)"
        else:
            text += f"; CAS inconclusive: {where}, within seed noise (±{100 * bound:.2f})"
    return text


def findings(table: pd.DataFrame, stops: dict, stop_cas: dict | None = None,
             real_val: float | None = None) -> list[str]:
    """One sentence per variant: how FID (and CAS, where scored) moves along its budgets, where FID flattens, and for
    each profile's stop (`stops`: {profile: gen_steps}) that was measured, its reading (`_stop_reading`).
    `stop_cas`: {family: validation CAS per seed at the stop} (the generators notebook's; else the curve's own);
    `real_val`: the real arm's validation accuracy, for the ratio at the largest budget with CAS."""
    stop_cas = stop_cas or {}
    lines = []
    for variant, curve in first_seed(table).sort_values("gen_steps").groupby("generator", sort=False):
        family = curve["family"].iloc[0]
        budgets, fids = [int(b) for b in curve["gen_steps"]], curve["fid"].tolist()
        recall = curve["recall"].tolist()
        if len(budgets) < 2:
            lines.append(f"{variant}: one budget measured ({budgets[0]:,} steps: FID {fids[0]:.2f}, recall "
                         f"{recall[0]:.2f}): no curve.")
            continue
        plateau = plateau_budget(budgets, fids, FID_TOLERANCE)
        text = (f"{variant}: validation FID {fids[0]:.2f} at {budgets[0]:,} steps → {fids[-1]:.2f} at "
                f"{budgets[-1]:,}, recall {recall[0]:.2f} → {recall[-1]:.2f}; " + _fid_reading(budgets, plateau))
        cas_cells = curve["cas_val"].tolist() if "cas_val" in curve else [math.nan] * len(budgets)
        scored = [(b, c) for b, c in zip(budgets, cas_means(curve)) if not math.isnan(c)]
        if scored:
            text += (f"; validation CAS {100 * scored[0][1]:.1f}% at {scored[0][0]:,} → {100 * scored[-1][1]:.1f}% at "
                     f"{scored[-1][0]:,} ({_seeds_text(cas_cells)})")
            if real_val:
                text += f", {scored[-1][1] / real_val:.3f} of real's {100 * real_val:.2f}%"
        for profile, gen_steps in stops.items():
            stop = gen_steps.get(family)
            if stop in budgets:
                text += f"; {profile} stops at {stop:,}: " + _stop_reading(budgets, fids, cas_cells, plateau, stop,
                                                                            stop_cas.get(family, []))
            elif stop is not None and stop > budgets[-1]:
                text += f"; {profile} stops at {stop:,}, beyond the largest budget measured"
        lines.append(text + ".")
    return lines
