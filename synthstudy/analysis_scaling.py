"""Analysis of the classifier grids (baseline and scaling notebooks): tidy table → summary, verdicts, findings text.

Everything a notebook prints as a conclusion is computed here, from the tidy `metrics.csv` table, so unit tests reach
it (tests/test_analysis_scaling.py builds tables with planted effects):

- `budget_checks`: is the real arm at its plateau? (the same cells at twice the budget, on validation)
- `arm_labels`: the readable `variant` and the `synthetic_fraction` / `unique_synthetic` columns
- `comparisons`: every synthetic arm vs the real arm at its N, and every fixed pool vs the stream (paired on seeds,
  one Holm family for the notebook, equivalence only from TOST against the margin)
- `summary`: mean ± CI per arm with its verdict and its effective-data multiplier (given only where the real curve
  rises significantly, with a bootstrap CI; `metrics.effective_data_ci`)
- `findings`: the generated conclusion sentences.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import metrics, sources

ARM_ORDER = {"real": 0, "stream": 1, "pool": 2, "mix": 3, "mix_replace": 4}


def main_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The grid's cells at the budget (the budget check's doubled cells left out)."""
    if "budget_factor" not in table:
        return table
    return table[table["budget_factor"].isna() | (table["budget_factor"] == 1)]


def budget_checks(table: pd.DataFrame, sizes) -> pd.DataFrame:
    """One row per checked N: the real arm's validation accuracy at the budget and at twice it (paired on seeds).

    Columns: n, steps, doubled_steps, val_accuracy (mean at the budget), gain, gain_ci_low, gain_ci_high, noise,
    at_plateau and verdict (the sentence the notebook prints).
    """
    rows = []
    real = table[table["arm"] == "real"]
    factor = real["budget_factor"].fillna(1) if "budget_factor" in real else pd.Series(1, index=real.index)
    for n in sizes:
        base = real[(real["n"] == n) & (factor == 1)].set_index("seed")
        doubled = real[(real["n"] == n) & (factor == 2)].set_index("seed")
        seeds = base.index.intersection(doubled.index).sort_values()
        if len(seeds) < 2:
            rows.append({"n": n, "verdict": f"budget check at N={n:,}: fewer than 2 seeds at both budgets"})
            continue
        check = metrics.budget_check(base.loc[seeds, "val_accuracy"], doubled.loc[seeds, "val_accuracy"])
        rows.append({"n": n, "steps": int(base["steps"].iloc[0]), "doubled_steps": int(doubled["steps"].iloc[0]),
                     "val_accuracy": float(base.loc[seeds, "val_accuracy"].mean()), "gain": check.gain,
                     "gain_ci_low": check.gain_ci_low, "gain_ci_high": check.gain_ci_high, "noise": check.noise,
                     "at_plateau": check.at_plateau,
                     "verdict": f"N={n:,} ({int(base['steps'].iloc[0]):,} → {int(doubled['steps'].iloc[0]):,} "
                                f"steps): {check.text()}"})
    return pd.DataFrame(rows)


def arm_labels(table: pd.DataFrame, batch_size: int) -> pd.DataFrame:
    """Add `variant` (readable arm), `synthetic_fraction` (share of each batch) and `unique_synthetic` (distinct
    synthetic images the classifier saw: M for a pool, every synthetic image for the stream and the mixes)."""
    out = table.copy()
    for column in ("m", "synthetic_fraction"):
        if column not in out:
            out[column] = np.nan
    out["synthetic_fraction"] = np.select([out["arm"] == "real", out["arm"].isin(["mix", "mix_replace"])],
                                          [0.0, out["synthetic_fraction"]], 1.0)
    per_step = [sources.extra_synthetic(batch_size, f) if arm == "mix" else round(f * batch_size)
                for arm, f in zip(out["arm"], out["synthetic_fraction"])]
    out["unique_synthetic"] = np.where(out["arm"] == "pool", out["m"], np.asarray(per_step) * out["steps"]).astype(int)

    def variant(row):
        if row["arm"] == "pool":
            return f"pool M={int(row['m'])}"
        if row["arm"] == "mix":
            return f"real + {row['synthetic_fraction']:.0%} synthetic"
        if row["arm"] == "mix_replace":
            return f"mix-replace {row['synthetic_fraction']:.0%}"
        return row["arm"]

    out["variant"] = out.apply(variant, axis=1)
    out["label"] = np.where(out["generator"] == "none", out["variant"], out["generator"] + " " + out["variant"])
    return out


def comparisons(table: pd.DataFrame, margin: float, value: str = "test_accuracy") -> pd.DataFrame:
    """The notebook's family of paired comparisons, Holm-corrected together.

    Each synthetic arm against the real arm at the same N ("vs real"), and each fixed pool against the stream of the
    same generator and N ("vs stream": does the number of unique samples matter?).
    """
    vs_real = metrics.paired_comparisons(table, value=value, arm="label", reference="real", within="n",
                                         margin=margin)
    vs_real["question"] = "vs real"
    parts = [vs_real]
    for generator in sorted(set(table["generator"]) - {"none"}):
        rows = table[(table["generator"] == generator) & table["arm"].isin(["stream", "pool"])]
        if (rows["arm"] == "pool").any() and (rows["arm"] == "stream").any():
            vs_stream = metrics.paired_comparisons(rows, value=value, arm="label", reference=f"{generator} stream",
                                                   within="n", margin=margin)
            vs_stream["question"] = "vs stream"
            parts.append(vs_stream)
    return metrics.with_verdicts(pd.concat(parts, ignore_index=True))


def real_curve(table: pd.DataFrame, value: str = "test_accuracy") -> dict:
    """{N: per-seed accuracies of the real arm} (the yardstick of the multiplier)."""
    real = table[table["arm"] == "real"]
    return {int(n): group.sort_values("seed")[value].to_numpy() for n, group in real.groupby("n")}


def summary(table: pd.DataFrame, compared: pd.DataFrame, sizes, value: str = "test_accuracy") -> pd.DataFrame:
    """One row per (N, arm) at the synthetic arms' N: mean ± CI, the paired verdict vs real, the multiplier."""
    means = metrics.summarize(table, by=["n", "generator", "arm", "label"], value=value)
    firsts = table.groupby("label")[["variant", "synthetic_fraction", "m"]].first()
    means = means.join(firsts, on="label")
    unique = table.groupby(["n", "label"])["unique_synthetic"].first()
    means["unique_synthetic"] = [unique.get((n, label), 0) for n, label in zip(means["n"], means["label"])]
    vs_real = compared[compared["question"] == "vs real"].set_index(["n", "label"])
    curve = real_curve(table, value)
    rows = []
    for r in means.itertuples():
        row = {**r._asdict(), "accuracy (%)": metrics.format_ci(r.mean, r.ci)}
        row.pop("Index", None)
        if r.arm == "real":
            row.update({"vs real (paired)": "—", "verdict": "—", "worth (N_eff / N)": "—"})
        else:
            c = vs_real.loc[(r.n, r.label)] if (r.n, r.label) in vs_real.index else None
            row["verdict"] = c["verdict"] if c is not None else "—"
            row["vs real (paired)"] = metrics.format_difference(c) if c is not None else "—"
            values = table[(table["label"] == r.label) & (table["n"] == r.n)].sort_values("seed")[value]
            worth = metrics.effective_data_ci(curve, values.to_numpy()) if len(curve) >= 2 and len(values) >= 2 \
                else None
            row["worth (N_eff / N)"] = worth.multiplier_text(int(r.n)) if worth else "—"
            row["n_eff"] = worth.n_eff if worth else math.nan
            row["n_eff_status"] = worth.status if worth else "—"
        rows.append(row)
    out = pd.DataFrame(rows)
    out = out[out["n"].isin(list(sizes))]
    order = out["arm"].map(ARM_ORDER)
    return out.assign(_order=order).sort_values(["n", "_order", "unique_synthetic", "label"]).drop(columns="_order") \
        .reset_index(drop=True)


def findings(summary_table: pd.DataFrame, compared: pd.DataFrame, checks: pd.DataFrame, margin: float) -> list[str]:
    """The conclusion sentences, built from the verdicts only (nothing typed by hand)."""
    lines = []
    for r in checks.itertuples():
        lines.append(f"- **Budget check** {r.verdict}.")
    for n, rows in summary_table.groupby("n", sort=True):
        real = rows[rows["arm"] == "real"]
        head = f"real {real['accuracy (%)'].iloc[0]}%" if len(real) else "real arm missing"
        groups = {v: rows[rows["verdict"] == v]["label"].tolist() for v in metrics.VERDICTS}
        lines.append(f"- **N = {int(n):,}** ({head}): above real: {', '.join(groups['higher']) or 'none'}; "
                     f"equivalent within ±{margin * 100:.1f} pts: {', '.join(groups['equivalent']) or 'none'}; "
                     f"below real: {', '.join(groups['lower']) or 'none'}; inconclusive: "
                     f"{', '.join(groups['inconclusive']) or 'none'}.")
    pools = compared[compared["question"] == "vs stream"]
    for r in pools.itertuples():
        lines.append(f"- N = {int(r.n):,}, {r.label} vs {r.reference}: {metrics.format_difference(r._asdict())}.")
    lines.append("- Verdicts: per-seed paired differences, Holm-corrected over every comparison above; "
                 "'equivalent' only from two one-sided tests against the margin, otherwise 'inconclusive'.")
    return lines
