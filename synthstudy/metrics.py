"""The study's statistics, one helper per question, used by every notebook:

    >>> from synthstudy import metrics
    >>> metrics.mean_ci([0.91, 0.92, 0.93])                 # (mean, half-width of the 95% t-interval)
    >>> metrics.summarize(df, by=["arm", "n"], value="accuracy")
    >>> metrics.paired_comparisons(df, value="test_accuracy", arm="variant", reference="real",
    ...                            within=["n"], pair_on="seed", margin=0.01)   # paired, Holm, equivalence
    >>> metrics.budget_check(val_at_budget, val_at_twice_the_budget)            # is the arm at its plateau?
    >>> metrics.effective_data_ci(real_table, synthetic_values, n=1000)         # N_eff with a bootstrap CI

Rules (the study's bar for a verdict):
- Intervals use Student's t with n-1 degrees of freedom (seeds are few, so the normal quantile would be too narrow).
- Arms that share seeds (same subset, initialisation and batch order) are compared by the per-seed differences:
  mean difference, its t-interval and the paired t-test. Within one notebook the p-values of a family of
  comparisons are Holm-corrected (`holm`).
- A difference is "higher" / "lower" only when its Holm-corrected p < alpha. Two arms are "equivalent" only when the
  two one-sided tests (TOST) against a stated margin reject, Holm-corrected too; otherwise the verdict is
  "inconclusive" — never "tie", which readers take for equivalence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the `confidence` t-interval; half-width is NaN for fewer than 2 values."""
    x = np.asarray(list(values), dtype=float)
    if len(x) == 0:
        raise ValueError("mean_ci needs at least one value")
    if len(x) < 2:
        return float(x.mean()), math.nan
    sem = x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * sem)


def summarize(frame, by, value: str, confidence: float = 0.95):
    """One row per group: mean, ci (half-width), ci_low, ci_high and seeds (number of values)."""
    import pandas as pd
    rows = []
    for keys, group in frame.groupby(by, sort=True):
        mean, half = mean_ci(group[value], confidence)
        keys = keys if isinstance(keys, tuple) else (keys,)
        rows.append({**dict(zip([by] if isinstance(by, str) else by, keys)), "mean": mean, "ci": half,
                     "ci_low": mean - half, "ci_high": mean + half, "seeds": len(group)})
    return pd.DataFrame(rows)


VERDICTS = ("higher", "lower", "equivalent", "inconclusive")


@dataclass(frozen=True)
class PairedDifference:
    """a - b over paired seeds: mean, t-interval, paired t p-value and the TOST p-value against ±margin."""

    mean: float
    ci_low: float
    ci_high: float
    p: float                  # two-sided paired t-test of "mean difference = 0" (NaN below 2 pairs)
    p_equivalence: float      # TOST: max of the two one-sided p-values of |difference| >= margin (NaN: no margin)
    pairs: int
    margin: float


def paired_difference(a, b, margin: float | None = None, confidence: float = 0.95) -> PairedDifference:
    """Compare two arms measured on the same seeds: `a[i]` and `b[i]` come from seed i.

    With zero spread (identical differences, e.g. deterministic runs) the difference is exact: p is 0 for a non-zero
    difference and 1 for none, and equivalence holds iff it lies strictly inside the margin.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arms need equal-length 1-d values (one per seed), got {a.shape} and {b.shape}")
    if margin is not None and not margin > 0:
        raise ValueError(f"margin={margin!r} must be > 0 (the largest difference still called equivalent)")
    d = a - b
    n = len(d)
    if n == 0:
        raise ValueError("paired_difference needs at least one pair")
    mean = float(d.mean())
    margin_value = math.nan if margin is None else float(margin)
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan, math.nan, n, margin_value)
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):
        p = 1.0 if abs(mean) <= 1e-12 else 0.0
        p_eq = math.nan if margin is None else (0.0 if abs(mean) < margin else 1.0)
        return PairedDifference(mean, mean, mean, p, p_eq, n, margin_value)
    se = sd / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * se)
    p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
    p_eq = math.nan
    if margin is not None:
        p_lower = stats.t.sf((mean + margin) / se, n - 1)      # H0: difference <= -margin
        p_upper = stats.t.cdf((mean - margin) / se, n - 1)     # H0: difference >= +margin
        p_eq = float(max(p_lower, p_upper))
    return PairedDifference(mean, mean - half, mean + half, p, p_eq, n, margin_value)


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control, any dependence); NaNs stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    if len(ok) == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def verdict(mean: float, p_holm: float, p_equivalence_holm: float, alpha: float = 0.05) -> str:
    """'higher' / 'lower' (difference significant after Holm), 'equivalent' (TOST significant after Holm) or
    'inconclusive' (neither: the data cannot tell, which is no evidence of equality)."""
    if p_holm < alpha:
        return "higher" if mean > 0 else "lower"
    if p_equivalence_holm < alpha:
        return "equivalent"
    return "inconclusive"


def paired_comparisons(table, value: str, arm: str, reference: str, within=(), pair_on: str = "seed",
                       margin: float | None = None, alpha: float = 0.05, confidence: float = 0.95,
                       candidates=None):
    """Every arm against `reference` inside each `within` group, paired on `pair_on`, as one Holm family.

    `table` is tidy (one row per cell). Returns one row per (group, arm): the group's fields, `arm`, `reference`,
    `pairs`, `difference` (mean of arm - reference), `ci_low` / `ci_high`, `p`, `p_holm`, `p_equivalence`,
    `p_equivalence_holm`, `margin` and `verdict`. Seeds missing from either arm are left out of that pair (the
    `pairs` column says how many remain). `candidates` limits the arms compared (default: every other arm).
    """
    import pandas as pd
    within = [within] if isinstance(within, str) else list(within)
    rows = []
    groups = table.groupby(within, sort=True) if within else [((), table)]
    for keys, group in groups:
        keys = keys if isinstance(keys, tuple) else (keys,)
        ref = group[group[arm] == reference].set_index(pair_on)[value]
        if ref.index.has_duplicates:
            raise ValueError(f"reference arm {reference!r} has several rows per {pair_on} in group "
                             f"{dict(zip(within, keys))}; add the distinguishing column to `within`")
        for name, rows_of_arm in group[group[arm] != reference].groupby(arm, sort=False):
            if candidates is not None and name not in candidates:
                continue
            values = rows_of_arm.set_index(pair_on)[value]
            if values.index.has_duplicates:
                raise ValueError(f"arm {name!r} has several rows per {pair_on} in group {dict(zip(within, keys))}")
            common = values.index.intersection(ref.index).sort_values()
            if len(common) == 0:
                continue
            d = paired_difference(values.loc[common].to_numpy(), ref.loc[common].to_numpy(), margin, confidence)
            rows.append({**dict(zip(within, keys)), arm: name, "reference": reference, "pairs": d.pairs,
                         "difference": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "p": d.p,
                         "p_equivalence": d.p_equivalence, "margin": d.margin})
    return with_verdicts(pd.DataFrame(rows), alpha=alpha)


def with_verdicts(comparisons, alpha: float = 0.05):
    """Add `p_holm`, `p_equivalence_holm` and `verdict` to a table of comparisons (one Holm family: the table).

    Concatenate the comparisons of a whole notebook first, then call this once, so every verdict the notebook
    prints is corrected for all the others.
    """
    out = comparisons.copy()
    if out.empty:
        for column in ("p_holm", "p_equivalence_holm", "verdict"):
            out[column] = []
        return out
    out["p_holm"] = holm(out["p"])
    out["p_equivalence_holm"] = holm(out["p_equivalence"])
    out["verdict"] = [verdict(m, p, q, alpha) for m, p, q in
                      zip(out["difference"], out["p_holm"].fillna(1.0), out["p_equivalence_holm"].fillna(1.0))]
    return out


def format_difference(row, scale: float = 100.0, digits: int = 2) -> str:
    """'+1.23 [+0.40, +2.06] pts, higher (p_Holm 0.012)' for one row of `paired_comparisons`."""
    ci = ("" if math.isnan(row["ci_low"]) else
          f" [{row['ci_low'] * scale:+.{digits}f}, {row['ci_high'] * scale:+.{digits}f}]")
    p = row["p_equivalence_holm"] if row["verdict"] == "equivalent" else row["p_holm"]
    p_text = "" if math.isnan(p) else f" (p_Holm {p:.2g})"
    return f"{row['difference'] * scale:+.{digits}f}{ci} pts, {row['verdict']}{p_text}"


@dataclass(frozen=True)
class BudgetCheck:
    """Does twice the budget still move validation accuracy? (paired on seeds)"""

    gain: float               # mean(twice) - mean(budget), paired per seed
    gain_ci_low: float
    gain_ci_high: float
    noise: float              # the 95% CI half-width of the budget's own mean: the yardstick of "moves"
    at_plateau: bool          # |gain| < noise: doubling moves the mean by less than its CI
    pairs: int

    def text(self, scale: float = 100.0) -> str:
        gain = f"{self.gain * scale:+.2f} pts [{self.gain_ci_low * scale:+.2f}, {self.gain_ci_high * scale:+.2f}]"
        if self.at_plateau:
            return (f"at plateau: twice the budget moves validation accuracy by {gain}, inside its "
                    f"±{self.noise * scale:.2f} CI")
        return (f"not at plateau: twice the budget adds {gain} of validation accuracy, beyond its "
                f"±{self.noise * scale:.2f} CI — the arm's numbers understate it by about that much")


def budget_check(at_budget, at_twice_the_budget, confidence: float = 0.95) -> BudgetCheck:
    """The study's plateau test: the same cells (seeds) at the budget and at twice it, scored on validation.

    "At plateau" when the mean gain of doubling is smaller than the 95% CI half-width of the budget's mean accuracy
    (the noise a reader already accepts in that number). The paired CI of the gain is reported beside it.
    """
    base = np.asarray(at_budget, float)
    if len(base) < 2:
        raise ValueError("budget_check needs at least 2 seeds (a CI) at each budget")
    d = paired_difference(at_twice_the_budget, base, confidence=confidence)
    noise = mean_ci(base, confidence)[1]
    return BudgetCheck(d.mean, d.ci_low, d.ci_high, noise, bool(abs(d.mean) < noise), d.pairs)


def format_ci(mean: float, half: float, scale: float = 100.0, digits: int = 2) -> str:
    """'93.12 ± 0.15' (percent by default)."""
    if math.isnan(half):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"


def effective_data(real_sizes, real_acc, acc: float) -> tuple[float, str]:
    """How many real images give accuracy `acc`: (N_eff, where), read off the real curve, never extrapolated.

    The real curve (mean accuracy per size) is made monotone by its running maximum, since more real data
    never helps less in expectation and a noisy dip would give two answers, then interpolated linearly in log N
    (the curve is roughly linear there). `where` is "inside" (N_eff is the smallest N on the curve reaching
    `acc`), "below" (worse than the smallest N: N_eff is NaN) or "above" (better than the largest: NaN).
    """
    sizes = np.asarray(real_sizes, dtype=float)
    curve = np.asarray(real_acc, dtype=float)
    if sizes.ndim != 1 or len(sizes) == 0 or sizes.shape != curve.shape:
        raise ValueError(f"real_sizes and real_acc must be 1-d and the same non-zero length, got "
                         f"{sizes.shape} and {curve.shape}")
    if (sizes <= 0).any() or len(np.unique(sizes)) != len(sizes):
        raise ValueError(f"real_sizes must be distinct positive numbers, got {sizes.tolist()}")
    if not (np.isfinite(curve).all() and math.isfinite(acc)):
        raise ValueError("accuracies must be finite numbers")
    order = np.argsort(sizes)
    sizes, curve = sizes[order], np.maximum.accumulate(curve[order])
    reached = np.flatnonzero(curve >= acc)
    if len(reached) == 0:
        return math.nan, "above"
    i = int(reached[0])
    if i == 0:
        return (float(sizes[0]), "inside") if acc >= curve[0] else (math.nan, "below")
    t = (acc - curve[i - 1]) / (curve[i] - curve[i - 1])      # > 0: curve[i - 1] < acc <= curve[i]
    log_n = math.log(sizes[i - 1]) + t * (math.log(sizes[i]) - math.log(sizes[i - 1]))
    return float(math.exp(log_n)), "inside"


def format_multiplier(n_eff: float, where: str, n: int, real_sizes) -> str:
    """'2.3× (N_eff 2,300)', or '< smallest N (100)' / '> largest N (55,000)' off the real curve."""
    if where == "below":
        return f"< smallest N ({int(min(real_sizes)):,})"
    if where == "above":
        return f"> largest N ({int(max(real_sizes)):,})"
    return f"{n_eff / n:.2g}× (N_eff {n_eff:,.0f})"


@dataclass(frozen=True)
class EffectiveData:
    """N_eff of a synthetic arm read off the real curve, given only where the curve can tell (`effective_data_ci`)."""

    n_eff: float              # NaN unless status == "given"
    ci_low: float             # bootstrap percentile interval over the seeds of both curves (NaN if not given)
    ci_high: float
    status: str               # given | below | above | flat
    reason: str               # why it is not given (empty when given)

    def multiplier_text(self, n: int) -> str:
        if self.status != "given":
            return self.reason
        return (f"{self.n_eff / n:.2g}× [{self.ci_low / n:.2g}, {self.ci_high / n:.2g}] "
                f"(N_eff {self.n_eff:,.0f} [{self.ci_low:,.0f}, {self.ci_high:,.0f}])")


def effective_data_ci(real_values: dict, synthetic, n_boot: int = 2000, alpha: float = 0.05,
                      seed: int = 0) -> EffectiveData:
    """The effective-data multiplier with its uncertainty, where the real curve supports one.

    `real_values` maps each real size N to its per-seed accuracies; `synthetic` holds the synthetic arm's per-seed
    accuracies. N_eff is `effective_data` on the means. It is *given* only when the real curve rises significantly
    (one-sided Welch test at `alpha`; the sizes are different data, so they are not paired) between the two sizes
    that bracket the synthetic mean; otherwise a flat stretch of the curve would turn noise into a multiplier of
    any size. Its CI is the percentile interval of N_eff over `n_boot` bootstrap resamples of the seeds of every
    real size and of the synthetic arm; a resample that falls off the curve counts at the curve's end.
    """
    sizes = sorted(real_values)
    values = [np.asarray(real_values[k], float) for k in sizes]
    synthetic = np.asarray(synthetic, float)
    if len(sizes) < 2 or any(len(v) < 2 for v in values) or len(synthetic) < 2:
        raise ValueError("effective_data_ci needs >= 2 real sizes and >= 2 seeds per size and for the synthetic arm")
    means = np.array([v.mean() for v in values])
    n_eff, where = effective_data(sizes, means, float(synthetic.mean()))
    if where == "below":
        return EffectiveData(math.nan, math.nan, math.nan, "below", f"< smallest N ({sizes[0]:,}): not given")
    if where == "above":
        return EffectiveData(math.nan, math.nan, math.nan, "above", f"> largest N ({sizes[-1]:,}): not given")
    curve = np.maximum.accumulate(means)
    upper = max(1, int(np.flatnonzero(curve >= synthetic.mean())[0]))
    lower = upper - 1
    rise = stats.ttest_ind(values[upper], values[lower], equal_var=False, alternative="greater").pvalue
    if not rise < alpha:
        return EffectiveData(math.nan, math.nan, math.nan, "flat",
                             f"not given: the real curve does not rise significantly between N={sizes[lower]:,} "
                             f"and N={sizes[upper]:,} (Welch p={rise:.2g})")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        boot = [v[rng.integers(0, len(v), len(v))].mean() for v in values]
        acc = synthetic[rng.integers(0, len(synthetic), len(synthetic))].mean()
        value, side = effective_data(sizes, boot, acc)
        draws.append(value if side == "inside" else (sizes[0] if side == "below" else sizes[-1]))
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return EffectiveData(n_eff, float(low), float(high), "given", "")
