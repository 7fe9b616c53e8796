"""Summary statistics the study reports: mean and 95% confidence intervals over seeds.

    >>> from synthstudy.metrics import mean_ci, summarize
    >>> mean_ci([0.91, 0.92, 0.93])          # (mean, half-width of the 95% t-interval)
    >>> summarize(df, by=["arm", "n"], value="accuracy")

Intervals use Student's t with n-1 degrees of freedom (seeds are few, so the normal quantile would be too narrow).
Two results whose intervals overlap are reported as a tie by `compare`.
"""
from __future__ import annotations

import math

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


def compare(a, b, confidence: float = 0.95) -> str:
    """'higher', 'lower' or 'tie' for a vs b, from Welch's t-test at the given confidence (ties when n < 2)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return "tie"
    if np.allclose(a.std(), 0) and np.allclose(b.std(), 0):
        return "tie" if np.isclose(a.mean(), b.mean()) else ("higher" if a.mean() > b.mean() else "lower")
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    if not p < 1 - confidence:
        return "tie"
    return "higher" if a.mean() > b.mean() else "lower"


def format_ci(mean: float, half: float, scale: float = 100.0, digits: int = 2) -> str:
    """'93.12 ± 0.15' (percent by default)."""
    if math.isnan(half):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"
