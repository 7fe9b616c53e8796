"""synthstudy.analysis_generators: planted budget curves — a stop below a planted plateau is found, a stop at it is
not flagged, a gap within seed noise is not called, and the notebook's CAS table gives the noise and the real arm."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from synthstudy import analysis_generators as ag


def curve(variant: str, family: str, budgets, fids, cas=None) -> pd.DataFrame:
    cas = cas or [None] * len(budgets)
    return pd.DataFrame({"generator": variant, "family": family, "gen_steps": budgets, "gen_seed": 0, "fid": fids,
                         "recall": [0.1 * i for i in range(len(budgets))],
                         "cas_val": [None if c is None else c for c in cas]})


def test_fid_plateau_is_the_first_budget_no_larger_budget_beats_by_the_tolerance():
    # 10 -> 5 halves; 5 -> 4.8 -> 4.7 moves 6%: flat from 2,000
    assert ag.plateau_budget([1000, 2000, 4000, 8000], [10, 5, 4.8, 4.7], 0.10, relative=True,
                             lower_is_better=True) == 2000
    # still 20% per doubling at the end: not reached (the largest budget alone never counts)
    assert ag.plateau_budget([1000, 2000, 4000], [10, 8, 6.4], 0.10, relative=True, lower_is_better=True) is None
    # a late drop counts against an early flat stretch: 5, 4.9 then 3 -> nothing before 8,000 is a plateau
    assert ag.plateau_budget([1000, 2000, 4000, 8000], [5, 4.9, 4.8, 3.0], 0.10, relative=True,
                             lower_is_better=True) is None


def test_seed_noise_is_the_95_percent_spread_of_a_difference_of_two_single_seeds():
    assert ag.cas_seed_noise([0.80, 0.82]) == pytest.approx(1.96 * math.sqrt(2) * 0.0141421, rel=1e-4)
    assert math.isnan(ag.cas_seed_noise([0.8]))


def test_cas_cells_are_read_as_numbers_or_as_several_seeds():
    table = pd.DataFrame({"cas_val": [0.8, "0.8 0.9", None]})
    means = ag.cas_means(table)
    assert means[0] == pytest.approx(0.8) and means[1] == pytest.approx(0.85) and math.isnan(means[2])


def test_a_stop_below_a_planted_cas_plateau_is_found_and_one_at_it_is_not():
    table = curve("flow", "flow", [1000, 2000, 4000, 8000], [9, 5, 3, 2], cas=[0.80, 0.82, 0.86, 0.865])
    noise = {"flow": 0.02}
    below, = ag.findings(table, {"paper": {"flow": 2000}}, noise, real_val=0.9)
    assert "paper stops at 2,000: below its plateau: 8,000 steps scores +4.5 pts validation CAS" in below
    assert "(0.961 of real's 90.00%)" in below
    at, = ag.findings(table, {"paper": {"flow": 4000}}, noise)
    assert "paper stops at 4,000: at its plateau by CAS" in at


def test_a_gap_within_seed_noise_is_not_called_a_shortfall():
    table = curve("flow", "flow", [1000, 2000], [9, 5], cas=[0.80, 0.83])
    line, = ag.findings(table, {"paper": {"flow": 1000}}, {"flow": 0.04})
    assert "at its plateau by CAS" in line                     # +3 pts inside ±4: no claim of a shortfall


def test_without_cas_the_stop_is_read_on_fid_and_a_missing_stop_is_skipped():
    table = pd.concat([curve("cvae", "cvae", [500, 1000, 2000], [50, 40, 39]),
                       curve("cgan", "cgan", [1000, 3000], [10, 6])])
    lines = ag.findings(table, {"paper": {"cvae": 2000, "cgan": 3000}, "quick": {"cvae": 800}})
    cvae = next(line for line in lines if line.startswith("cvae"))
    cgan = next(line for line in lines if line.startswith("cgan"))
    assert "flat (no larger budget better by > 10%) from 1,000 steps" in cvae and "paper stops at 2,000: at its FID " \
        "plateau" in cvae and "quick" not in cvae                  # quick's 800 was not measured: no verdict
    # its last budget still cut FID by 40%: the curve has not flattened, so the stop is not called a plateau
    assert "still improving by > 10% at 3,000 steps" in cgan and "paper stops at 3,000: below its FID plateau" in cgan


def test_the_notebook_cas_table_gives_each_family_its_noise_and_the_real_arm():
    cas_table = pd.DataFrame({"arm": ["real", "real", "flow", "flow", "cgan", "cgan", "real"],
                              "generator": ["none", "none", "flow", "flow", "cgan", "cgan", "none"],
                              "val_accuracy": [0.94, 0.92, 0.80, 0.84, 0.70, 0.70, 0.99],
                              "budget_factor": [None, None, None, None, None, None, 2.0]})
    noise, real = ag.cas_reference(cas_table)
    assert real == pytest.approx(0.93)                         # the budget check's doubled cell left out
    assert noise["flow"] == pytest.approx(ag.cas_seed_noise([0.80, 0.84])) and noise["cgan"] == 0
