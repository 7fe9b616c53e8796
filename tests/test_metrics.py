import math

import pandas as pd
import pytest

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


def test_compare_calls_overlapping_results_a_tie():
    assert metrics.compare([0.90, 0.91, 0.92], [0.80, 0.81, 0.82]) == "higher"
    assert metrics.compare([0.80, 0.85, 0.90], [0.82, 0.86, 0.88]) == "tie"
    assert metrics.compare([0.1, 0.11, 0.12], [0.5, 0.51, 0.52]) == "lower"


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
