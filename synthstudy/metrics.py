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


def __getattr__(name: str):
    """`metrics.domain_extractor` etc. live in `synthstudy.quality` (torch-heavy); reachable from here too."""
    if name in ("domain_extractor", "FeatureExtractor", "sample_quality", "cas"):
        from . import quality
        return getattr(quality, name)
    raise AttributeError(f"module 'synthstudy.metrics' has no attribute {name!r}")
