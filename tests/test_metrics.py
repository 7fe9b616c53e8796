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
