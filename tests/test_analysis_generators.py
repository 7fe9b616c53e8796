"""synthstudy.analysis_generators: planted budget curves — a stop short of a planted gain is found, a gain within
seed noise is called inconclusive (never a plateau), FID flattening needs two larger budgets, a single budget is no
curve, and the notebook's CAS table gives the seeds at the stop and the real arm."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from synthstudy import analysis_generators as ag


def curve(variant: str, family: str, budgets, fids, cas=None) -> pd.DataFrame:
    return pd.DataFrame({"generator": variant, "family": family, "gen_steps": budgets, "gen_seed": 0, "fid": fids,
                         "recall": [0.1 * i for i in range(len(budgets))],
                         "cas_val": cas or [math.nan] * len(budgets)})


def test_fid_flattens_from_the_first_budget_no_larger_budget_beats_by_the_tolerance():
    # 10 -> 5 halves; from 5 on, 4.8 and 4.7 move it 6%: flat from 2,000 (two larger budgets measured)
    assert ag.plateau_budget([1000, 2000, 4000, 8000], [10, 5, 4.8, 4.7], 0.10) == 2000
    # still 20% per doubling at the end: not flat
    assert ag.plateau_budget([1000, 2000, 4000], [10, 8, 6.4], 0.10) is None
    # a late drop counts against an early flat stretch
    assert ag.plateau_budget([1000, 2000, 4000, 8000], [5, 4.9, 4.8, 3.0], 0.10) is None
    # one larger budget alone cannot show a flat stretch
    assert ag.plateau_budget([1000, 2000], [10, 9.5], 0.10) is None


@pytest.mark.parametrize("steps, values, tolerance, message", [
    ([1, 2], [1.0], 0.1, "steps \\(2\\) and values \\(1\\) must have the same length"),
    ([1, 2], [1.0, 2.0], -0.1, "tolerance=-0.1: allowed: a number >= 0"),
])
def test_plateau_budget_refuses_bad_input(steps, values, tolerance, message):
    with pytest.raises(ValueError, match=message):
        ag.plateau_budget(steps, values, tolerance)


def test_the_shortfall_bound_is_a_two_sample_t_bound_with_the_stops_spread():
    at_stop = [0.80, 0.82, 0.81, 0.83, 0.79]
    difference, bound = ag.cas_shortfall(at_stop, [0.88])
    sd = pd.Series(at_stop).std()
    assert difference == pytest.approx(0.88 - 0.81)
    assert bound == pytest.approx(stats.t.ppf(0.975, 4) * sd * math.sqrt(1 / 5 + 1))
    assert math.isnan(ag.cas_shortfall([0.8], [0.9])[1])              # one seed: no spread measured
    assert math.isnan(ag.cas_shortfall([0.8, 0.8], [0.9])[1])         # no spread is no estimate, not zero noise


def test_cas_cells_are_read_as_numbers_or_as_several_seeds():
    means = ag.cas_means(pd.DataFrame({"cas_val": [0.8, "0.8 0.9", None]}))
    assert means[0] == pytest.approx(0.8) and means[1] == pytest.approx(0.85) and math.isnan(means[2])
    assert ag.cas_means(pd.DataFrame({"fid": [1.0]})).isna().all()          # curves without CAS


def test_a_planted_gain_beyond_noise_is_found_and_one_within_it_is_inconclusive():
    table = curve("flow", "flow", [1000, 2000, 4000, 8000], [9, 5, 3, 2], cas=[0.80, 0.82, 0.86, 0.88])
    seeds = [0.80, 0.82, 0.81, 0.83, 0.79]                               # the notebook's 5 seeds at the stop
    short, = ag.findings(table, {"paper": {"flow": 2000}}, {"flow": seeds}, real_val=0.9)
    assert "paper stops at 2,000: FID still falls after it (5.00 → 2.00 at 8,000)" in short
    assert "short of the largest budget: 8,000 steps scores +7.00 pts validation CAS over the stop's 5-seed mean" \
        in short
    assert "validation CAS 80.0% at 1,000 → 88.0% at 8,000" in short and "0.978 of real's 90.00%" in short
    close, = ag.findings(table, {"paper": {"flow": 2000}}, {"flow": [0.85, 0.89, 0.83, 0.87, 0.91]})
    assert "CAS inconclusive: 8,000 steps scores +1.00 pts" in close and "plateau" not in close.split("paper")[1]


def test_cas_scored_at_some_budgets_only_names_its_budgets_and_compares_only_the_largest():
    table = curve("flow", "flow", [1000, 2000, 4000], [9, 5, 3], cas=[math.nan, 0.82, math.nan])
    line, = ag.findings(table, {"paper": {"flow": 1000}}, {"flow": [0.80, 0.81]})
    assert "validation CAS 82.0% at 2,000 → 82.0% at 2,000" in line
    assert "scores" not in line                       # no CAS at the largest budget: no comparison made


def test_without_cas_the_stop_is_read_on_fid_and_an_unmeasured_stop_is_skipped():
    table = pd.concat([curve("cvae", "cvae", [500, 1000, 2000, 4000], [50, 40, 39, 38.5]),
                       curve("cgan", "cgan", [1000, 3000], [10, 6])])
    lines = ag.findings(table, {"paper": {"cvae": 2000, "cgan": 3000}, "quick": {"cvae": 800}})
    cvae = next(line for line in lines if line.startswith("cvae"))
    cgan = next(line for line in lines if line.startswith("cgan"))
    assert "FID flat (no larger budget better by > 10%) from 1,000 steps" in cvae
    assert "paper stops at 2,000: FID flat there (39.00)" in cvae and "quick" not in cvae   # 800 was not measured
    assert "FID not flat within 3,000 steps (a larger budget" in cgan
    assert "paper stops at 3,000: no larger budget measured" in cgan


def test_a_variant_measured_at_one_budget_is_no_curve_and_gets_no_stop_reading():
    line, = ag.findings(curve("cgan-ms1", "cgan", [1200], [12.96]), {"quick": {"cgan": 1200}})
    assert line == "cgan-ms1: one budget measured (1,200 steps: FID 12.96, recall 0.00): no curve."


def test_the_notebook_cas_table_gives_each_family_its_seeds_and_the_real_arm():
    cas_table = pd.DataFrame({"arm": ["real", "real", "flow", "flow", "cgan", "real"],
                              "generator": ["none", "none", "flow", "flow", "cgan", "none"],
                              "val_accuracy": [0.94, 0.92, 0.80, 0.84, 0.70, 0.99],
                              "budget_factor": [None, None, None, None, None, 2.0]})
    seeds, real = ag.cas_reference(cas_table)
    assert real == pytest.approx(0.93)                         # the budget check's doubled cell left out
    assert seeds == {"flow": [0.80, 0.84], "cgan": [0.70]}


def test_the_cas_clause_counts_the_classifier_seeds_it_averages():
    one, = ag.findings(curve("flow", "flow", [1000, 2000], [9, 5], cas=[0.80, 0.82]), {})
    several, = ag.findings(curve("flow", "flow", [1000, 2000], [9, 5], cas=["0.80 0.82", "0.83 0.85 0.84"]), {})
    assert "(one classifier seed per budget)" in one
    assert "81.0% at 1,000 → 84.0% at 2,000 (mean of 2-3 classifier seeds per budget)" in several


REAL_VAL = [0.940, 0.942, 0.939, 0.941, 0.943]             # 0.95 x their mean: 0.8938


@pytest.mark.parametrize("synthetic, verdict", [
    ([0.905, 0.903, 0.907], "at least"),                   # planted 1 pt above 0.95 x real, spread 0.2 pts
    ([0.880, 0.882, 0.878], "below"),                      # planted 1.4 pts under it
    ([0.890, 0.900, 0.895], "inconclusive"),               # 0.1 pts above, with a 0.5-pt spread
    ([0.905], "inconclusive"),                             # one seed: no spread to judge by
])
def test_share_of_real_finds_a_planted_share_and_calls_a_close_one_inconclusive(synthetic, verdict):
    share = ag.share_of_real(synthetic, REAL_VAL)
    assert share["verdict"] == verdict
    assert share["ratio"] == pytest.approx(sum(synthetic) / len(synthetic) / (sum(REAL_VAL) / 5))
    assert share["difference"] == pytest.approx(sum(synthetic) / len(synthetic) - 0.95 * sum(REAL_VAL) / 5)


def test_share_of_real_is_welchs_interval():
    s, r = [0.905, 0.903, 0.907], REAL_VAL
    share = ag.share_of_real(s, r)
    # scipy's Welch test of s against 0.95 x real is the same interval (an independent computation)
    welch = stats.ttest_ind(s, [0.95 * v for v in r], equal_var=False).confidence_interval(0.95)
    assert (share["ci_low"], share["ci_high"]) == pytest.approx((welch.low, welch.high))


@pytest.mark.parametrize("target, message", [(0.0, "target=0.0: allowed"), (1.5, "target=1.5: allowed")])
def test_share_of_real_refuses_a_target_outside_a_share(target, message):
    with pytest.raises(ValueError, match=message):
        ag.share_of_real([0.9, 0.91], REAL_VAL, target)


def sampler_rows(name, val, test):
    return pd.DataFrame({"sampler": name, "seed": range(len(val)), "val_accuracy": val, "test_accuracy": test})


def test_the_best_sampler_is_chosen_on_validation_among_those_with_enough_seeds():
    samplers = pd.concat([
        sampler_rows("a", [0.88, 0.881, 0.879], [0.95, 0.95, 0.95]),       # best on test: never chosen for it
        sampler_rows("b", [0.905, 0.903, 0.907], [0.90, 0.902, 0.898]),    # best on validation
        sampler_rows("c", [0.99, 0.99], [0.99, 0.99]),                     # two seeds only
    ])
    assert set(ag.best_sampler(samplers)["sampler"]) == {"b"}
    assert ag.best_sampler(samplers[samplers["sampler"] == "c"]).empty
    cas_table = pd.DataFrame({"arm": "real", "generator": "none", "seed": range(5), "val_accuracy": REAL_VAL,
                              "test_accuracy": [0.935, 0.936, 0.934, 0.935, 0.936]})
    reading = ag.best_sampler_reading(samplers, cas_table)
    assert reading.startswith("best flow sampler on validation CAS (2 with ≥ 3 seeds")
    assert ": b, 3 seeds" in reading
    # validation: 0.905 / 0.941 = 0.962, at least 0.95; test: 0.900 / 0.9352 = 0.962, at least too
    assert "validation, where it was chosen: 90.50% against real's 94.10%, 0.962 of real — at least 0.95× real" \
        in reading
    assert "test, which chose nothing: 90.00% against real's 93.52%, 0.962 of real — at least 0.95× real" in reading
    assert ag.best_sampler_reading(samplers, cas_table[cas_table["arm"] == "flow"]) == ""       # no real arm


def test_a_stop_beyond_the_curve_is_named_and_not_read():
    table = curve("flow", "flow", [1000, 2000, 4000], [9, 5, 3], cas=[0.80, 0.82, 0.86])
    line, = ag.findings(table, {"paper": {"flow": 64000}}, {"flow": [0.89, 0.9]}, real_val=0.94)
    assert line.endswith("; paper stops at 64,000, beyond the largest budget measured.")
    assert "short of" not in line and "inconclusive" not in line


def scored(variant: str, config: str, val, seeds=(0, 1, 2, 3, 4), steps: int = 3000, recall: float = 0.1):
    return {"generator": variant, "family": "cgan", "config": config, "gen_steps": steps, "gen_seed": 0, "fid": 5.0,
            "recall": recall, "coverage": recall / 2, "cas_seeds": " ".join(map(str, seeds)),
            "cas_val": " ".join(f"{v:.4f}" for v in val),
            "cas_test": " ".join(f"{v - 0.05:.4f}" for v in val)}


DEFAULTS = [0.660, 0.672, 0.655, 0.668, 0.661]             # classifier seeds 0-4: a spread shared by every arm


def test_a_variant_is_paired_with_the_defaults_on_classifier_seeds_and_a_planted_gain_is_found():
    from synthstudy import metrics
    table = pd.DataFrame([
        scored("cgan", "{}", DEFAULTS, recall=0.03),
        scored("cgan-ms", '{"mode_seeking": 1}', [v + 0.025 + e for v, e in zip(DEFAULTS, [0, .002, -.002, .001, 0])],
               recall=0.31),
        scored("cgan-same", '{"width": 24}', [v + e for v, e in zip(DEFAULTS, [.004, -.003, .002, -.004, .001])]),
        scored("cgan", "{}", [0.70, 0.69, 0.71], seeds=[0, 1, 2], steps=1000),        # another budget, another pair
        scored("cgan-ms", '{"mode_seeking": 1}', [0.71, 0.69, 0.73], seeds=[0, 1, 2], steps=1000),
        scored("cgan", "{}", [0.7], seeds=[0], steps=500),        # a budget without a variant: nothing to compare
    ])
    comparisons = ag.variant_comparisons(table, margin=0.01)
    assert len(comparisons) == 3 and (comparisons["reference"] == "cgan").all()
    # one Holm family over every budget's comparisons, not one per budget
    assert comparisons["p_holm"].tolist() == pytest.approx(metrics.holm(comparisons["p"]).tolist())
    assert (comparisons["holm_family"] == 3).all()
    at_3000 = comparisons[comparisons["gen_steps"] == 3000].set_index("generator")
    gain = at_3000.loc["cgan-ms"]
    assert gain["verdict"] == "higher" and gain["pairs"] == 5 and gain["difference"] == pytest.approx(0.0252)
    assert (gain["recall"], gain["reference_recall"]) == (0.31, 0.03)
    assert at_3000.loc["cgan-same", "verdict"] == "equivalent"
    line = ag.variant_findings(comparisons[comparisons["gen_steps"] == 3000].iloc[:1])[0]
    assert line.startswith("cgan-ms against cgan at 3,000 steps (training seed 0): validation CAS +2.52 [")
    assert "higher" in line and "5 classifier seeds paired, Holm over 3," in line
    assert "recall 0.31 against 0.03, coverage 0.15 against 0.01" in line


def test_only_shared_classifier_seeds_are_paired_and_one_pair_is_not_tested():
    table = pd.DataFrame([scored("cgan", "{}", DEFAULTS),
                          scored("cgan-ms", '{"mode_seeking": 1}', [0.70, 0.71], seeds=(3, 9))])
    comparisons = ag.variant_comparisons(table, margin=0.01)
    row = comparisons.iloc[0]
    assert row["pairs"] == 1 and row["difference"] == pytest.approx(0.70 - 0.668)
    assert row["verdict"] == "inconclusive" and row["holm_family"] == 0
    assert "1 classifier seed paired: not tested" in ag.variant_findings(comparisons)[0]


def test_variant_comparisons_refuse_two_default_variants_beside_a_variant_and_miscounted_seeds():
    two = pd.DataFrame([scored("cgan", "{}", DEFAULTS), scored("cgan-cpu", "{}", DEFAULTS),
                        scored("cgan-ms", '{"mode_seeking": 1}', DEFAULTS)])
    with pytest.raises(ValueError, match="several default-settings variants scored at 3,000.*'cgan', 'cgan-cpu'"):
        ag.variant_comparisons(two, margin=0.01)
    # two default variants at a budget no variant was scored at: nothing is compared there, nothing refused
    elsewhere = pd.concat([two.iloc[:2], pd.DataFrame([scored("cgan-ms", '{"mode_seeking": 1}', DEFAULTS,
                                                              steps=1000), scored("cgan", "{}", DEFAULTS,
                                                                                  steps=1000)])])
    assert ag.variant_comparisons(elsewhere, margin=0.01)["gen_steps"].tolist() == [1000]
    bad = pd.DataFrame([scored("cgan", "{}", DEFAULTS) | {"cas_seeds": "0 1"},
                        scored("cgan-ms", '{"mode_seeking": 1}', DEFAULTS)])
    with pytest.raises(ValueError, match="2 cas_seeds for 5 cas_val"):
        ag.variant_comparisons(bad, margin=0.01)
    assert ag.variant_comparisons(pd.DataFrame([scored("cgan", "{}", DEFAULTS)]), margin=0.01).empty
    assert ag.variant_comparisons(pd.DataFrame([scored("cgan", "{}", DEFAULTS)]).drop(columns="config"),
                                  margin=0.01).empty


def prdc_row(variant: str, config: str, steps: int, recall: float, coverage: float, family: str = "cgan") -> dict:
    return {"generator": variant, "family": family, "config": config, "gen_steps": steps, "gen_seed": 0,
            "fid": 5.0, "recall": recall, "coverage": coverage}


def test_collapse_needs_recall_and_the_defaults_coverage_so_a_planted_spread_does_not_pass():
    ms = '{"mode_seeking": 1}'
    table = pd.DataFrame([
        prdc_row("cgan", "{}", 3000, 0.03, 0.29), prdc_row("cgan", "{}", 12000, 0.12, 0.40),
        prdc_row("cgan-ms", ms, 3000, 0.33, 0.19),          # recall met, coverage below the defaults': spread
        prdc_row("cgan-ms", ms, 12000, 0.35, 0.41),         # both: meets
        prdc_row("cgan-ms", ms, 6000, 0.31, 0.30),          # no defaults fitted at 6,000
        prdc_row("cgan-wide", '{"width": 24}', 3000, 0.05, 0.35),
        prdc_row("flow", "{}", 3000, 0.6, 0.8, family="flow"),    # another family: not read
    ])
    readings = ag.collapse_readings(table)
    verdicts = {(r.generator, r.gen_steps): r.verdict for r in readings.itertuples()}
    assert verdicts == {("cgan", 3000): "short of recall", ("cgan", 12000): "short of recall",
                        ("cgan-ms", 3000): "recall by spread", ("cgan-ms", 12000): "meets",
                        ("cgan-ms", 6000): "no reference", ("cgan-wide", 3000): "short of recall"}
    assert readings.set_index(["generator", "gen_steps"]).loc[("cgan-ms", 12000), "reference_coverage"] == 0.40
    assert "met by cgan-ms at 12,000 steps (recall 0.35, coverage 0.41 against 0.40)" in ag.collapse_finding(readings)
    # without the 12,000-step fit nothing meets it, and the sentence names the best recall and why it fails
    short = ag.collapse_readings(table[table["gen_steps"] != 12000])
    assert ag.collapse_finding(short) == (
        "cgan without collapse (recall ≥ 0.3 with coverage at least the defaults' at the same budget (validation; "
        "one fit per row, no CI)): not met by any of 4 rows; the highest recall is cgan-ms at 3,000 steps, 0.33, "
        "coverage 0.19 against the defaults' 0.29 (recall by spread).")


def test_collapse_readings_refuse_two_default_rows_at_one_budget_and_read_nothing_without_rows():
    two = pd.DataFrame([prdc_row("cgan", "{}", 3000, 0.03, 0.29), prdc_row("cgan-cpu", "{}", 3000, 0.04, 0.27)])
    with pytest.raises(ValueError, match="several default-settings rows at 3,000 steps.*'cgan', 'cgan-cpu'"):
        ag.collapse_readings(two)
    assert ag.collapse_readings(pd.DataFrame([prdc_row("flow", "{}", 3000, 0.6, 0.8, family="flow")])).empty
    assert ag.collapse_finding(ag.collapse_readings(pd.DataFrame())) == ""
