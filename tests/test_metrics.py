import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from synthstudy import metrics


def test_mean_ci_matches_a_hand_computed_t_interval():
    mean, half = metrics.mean_ci([1.0, 2.0, 3.0])
    # sd = 1, sem = 1/sqrt(3), t_{0.975, 2} = 4.302653
    assert mean == 2.0 and half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(metrics.mean_ci([5.0])[1])


def test_summarize_groups_and_counts_seeds():
    frame = pd.DataFrame({"n": [10, 10, 10, 20, 20, 20], "acc": [0.5, 0.6, 0.7, 0.8, 0.8, 0.8]})
    s = metrics.summarize(frame, by="n", value="acc")
    assert s["n"].tolist() == [10, 20] and s["seeds"].tolist() == [3, 3]
    assert s["mean"].tolist() == pytest.approx([0.6, 0.8]) and s["ci"].iloc[1] == pytest.approx(0, abs=1e-12)


def _seeds(rng, n, mean, seed_effect, noise):
    """Accuracies of one arm on n seeds: a shared per-seed effect (subset, init) plus the arm's own noise."""
    return mean + seed_effect + rng.normal(0, noise, n)


def test_paired_difference_finds_a_planted_difference_that_welch_misses():
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.02, 5)             # large seed-to-seed spread shared by both arms
    a, b = _seeds(rng, 5, 0.90, shared, 0.001), _seeds(rng, 5, 0.89, shared, 0.001)
    d = metrics.paired_difference(a, b, margin=0.005)
    assert d.p < 0.01 and d.ci_low > 0 and d.pairs == 5
    assert stats.ttest_ind(a, b, equal_var=False).pvalue > 0.05     # the unpaired test cannot see it


def test_paired_difference_null_is_not_found_and_equivalence_needs_data():
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(200):                                             # false-positive rate near alpha
        shared = rng.normal(0, 0.02, 3)
        d = metrics.paired_difference(_seeds(rng, 3, 0.9, shared, 0.005), _seeds(rng, 3, 0.9, shared, 0.005))
        found += d.p < 0.05
    assert found <= 20
    shared = rng.normal(0, 0.02, 3)
    few = metrics.paired_difference(_seeds(rng, 3, 0.9, shared, 0.01), _seeds(rng, 3, 0.9, shared, 0.01), 0.01)
    assert few.p_equivalence > 0.05              # 3 noisy seeds cannot show |difference| < 1 point
    shared = rng.normal(0, 0.02, 20)
    many = metrics.paired_difference(_seeds(rng, 20, 0.9, shared, 0.002), _seeds(rng, 20, 0.9, shared, 0.002), 0.01)
    assert many.p_equivalence < 0.01
    exact = metrics.paired_difference([0.5, 0.6], [0.5, 0.6], margin=0.01)
    assert exact.p == 1.0 and exact.p_equivalence == 0.0
    with pytest.raises(ValueError, match="margin"):
        metrics.paired_difference([1, 2], [1, 2], margin=0)
    with pytest.raises(ValueError, match="equal-length"):
        metrics.paired_difference([1, 2], [1, 2, 3])


def test_holm_matches_hand_computed_step_down():
    adjusted = metrics.holm([0.01, 0.04, 0.03, np.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])
    assert metrics.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_paired_comparisons_give_holm_corrected_verdicts():
    rng = np.random.default_rng(2)
    rows = []
    for n in (100, 1000):
        shared = rng.normal(0, 0.01, 5)
        for arm, mean in (("real", 0.80), ("better", 0.85), ("same", 0.80)):
            noise = 0.0005 if arm != "same" else 0.0005
            for seed, acc in enumerate(_seeds(rng, 5, mean, shared, noise)):
                rows.append({"n": n, "arm": arm, "seed": seed, "acc": acc})
    table = pd.DataFrame(rows)
    out = metrics.paired_comparisons(table, value="acc", arm="arm", reference="real", within="n", margin=0.01)
    verdicts = dict(zip(zip(out["n"], out["arm"]), out["verdict"]))
    assert verdicts == {(100, "better"): "higher", (100, "same"): "equivalent",
                        (1000, "better"): "higher", (1000, "same"): "equivalent"}
    assert (out["p_holm"] >= out["p"]).all()
    assert "higher" in metrics.format_difference(out.iloc[0])
    # only 2 noisy seeds: inconclusive, never "equivalent"
    two = pd.DataFrame({"arm": ["real", "real", "same", "same"], "seed": [0, 1, 0, 1],
                        "acc": [0.80, 0.82, 0.81, 0.812]})          # differences +0.01 and -0.008
    out2 = metrics.paired_comparisons(two, value="acc", arm="arm", reference="real", margin=0.01)
    assert out2["verdict"].tolist() == ["inconclusive"]


def test_budget_check_calls_a_plateau_only_inside_the_noise():
    base = [0.900, 0.905, 0.895]
    assert metrics.budget_check(base, [0.901, 0.904, 0.896]).at_plateau
    climbing = metrics.budget_check(base, [0.920, 0.926, 0.914])
    assert not climbing.at_plateau and climbing.gain == pytest.approx(0.02)
    assert "not at plateau" in climbing.text() and "at plateau" in metrics.budget_check(base, base).text()
    with pytest.raises(ValueError, match="2 seeds"):
        metrics.budget_check([0.9], [0.91])


def test_effective_data_ci_only_where_the_real_curve_rises():
    rising = {100: [0.70, 0.71, 0.69], 1000: [0.80, 0.81, 0.79], 10000: [0.85, 0.86, 0.84]}
    e = metrics.effective_data_ci(rising, [0.75, 0.76, 0.74])
    assert e.status == "given" and e.n_eff == pytest.approx(math.sqrt(100 * 1000))
    assert 100 <= e.ci_low < e.n_eff < e.ci_high <= 1000
    assert "×" in e.multiplier_text(100)
    flat = {100: [0.70, 0.71, 0.69], 1000: [0.80, 0.81, 0.79], 10000: [0.80, 0.82, 0.79]}
    f = metrics.effective_data_ci(flat, [0.802, 0.803, 0.801])
    assert f.status == "flat" and math.isnan(f.n_eff) and "does not rise" in f.reason
    assert metrics.effective_data_ci(rising, [0.6, 0.61, 0.6]).status == "below"
    assert metrics.effective_data_ci(rising, [0.9, 0.91, 0.9]).status == "above"


def test_format_ci():
    assert metrics.format_ci(0.93123, 0.0015) == "93.12 ± 0.15"


def test_effective_data_interpolates_in_log_n_and_never_extrapolates():
    sizes, acc = [100, 1000, 10000], [0.70, 0.80, 0.85]
    n_eff, where = metrics.effective_data(sizes, acc, 0.75)
    assert where == "inside" and n_eff == pytest.approx(math.sqrt(100 * 1000))     # halfway in log N
    assert metrics.effective_data(sizes, acc, 0.80) == (pytest.approx(1000), "inside")
    assert metrics.effective_data(sizes, acc, 0.70) == (pytest.approx(100), "inside")
    below, above = metrics.effective_data(sizes, acc, 0.69), metrics.effective_data(sizes, acc, 0.86)
    assert below[1] == "below" and above[1] == "above" and math.isnan(below[0]) and math.isnan(above[0])
    # order does not matter; a noisy dip is flattened by the running max: 0.80 is first reached at N = 1000
    n_eff, where = metrics.effective_data([3000, 100, 1000], [0.79, 0.70, 0.80], 0.80)
    assert where == "inside" and n_eff == pytest.approx(1000)
    assert metrics.effective_data([100, 1000, 3000], [0.70, 0.80, 0.79], 0.795)[0] < 1000
    with pytest.raises(ValueError, match="same non-zero length"):
        metrics.effective_data([100, 1000], [0.7], 0.75)
    with pytest.raises(ValueError, match="distinct positive"):
        metrics.effective_data([100, 100], [0.7, 0.8], 0.75)


def test_format_multiplier_names_the_end_of_the_curve():
    assert metrics.format_multiplier(2300.0, "inside", 1000, [100, 55000]) == "2.3× (N_eff 2,300)"
    assert metrics.format_multiplier(math.nan, "below", 1000, [100, 55000]) == "< smallest N (100)"
    assert metrics.format_multiplier(math.nan, "above", 1000, [100, 55000]) == "> largest N (55,000)"
