"""The classifier grids' analysis on constructed tables: planted effects are found, nulls are not."""
import numpy as np
import pandas as pd
import pytest

from synthstudy import analysis_scaling as A


def grid(effects: dict, sizes=(100, 1000, 10000), seeds=range(5), noise=0.002, curve=None, seed=0):
    """A tidy table like the scaling notebook's: a real curve rising in log N, and synthetic arms at N=1000 whose
    per-seed accuracy is the real arm's plus `effects[arm]` (shared seed effect, small own noise)."""
    rng = np.random.default_rng(seed)
    curve = curve or {100: 0.70, 1000: 0.80, 10000: 0.86}
    rows = []
    for n in sizes:
        shared = rng.normal(0, 0.01, len(seeds))
        for s, e in zip(seeds, shared):
            base = {"n": n, "seed": s, "steps": 400, "test_accuracy": curve[n] + e + rng.normal(0, noise),
                    "val_accuracy": curve[n] + e}
            rows.append({**base, "arm": "real", "generator": "none"})
            if n == 1000:
                for (generator, arm), effect in effects.items():
                    rows.append({**base, "arm": arm, "generator": generator, "m": 10000 if arm == "pool" else np.nan,
                                 "synthetic_fraction": 0.5 if arm == "mix" else np.nan,
                                 "test_accuracy": curve[n] + e + effect + rng.normal(0, noise)})
    return A.arm_labels(pd.DataFrame(rows), batch_size=128)


def test_labels_count_the_synthetic_images_each_arm_saw():
    table = grid({("flow", "stream"): 0.0, ("flow", "mix"): 0.0, ("flow", "pool"): 0.0})
    labelled = table.drop_duplicates("label").set_index("label")
    assert labelled.loc["flow real + 50% synthetic", "unique_synthetic"] == 128 * 400    # 128 added per step
    assert labelled.loc["flow stream", "unique_synthetic"] == 128 * 400
    assert labelled.loc["flow pool M=10000", "unique_synthetic"] == 10000
    assert labelled.loc["real", "unique_synthetic"] == 0


def test_planted_gain_loss_and_equivalence_get_their_verdicts_and_a_null_stays_inconclusive():
    table = grid({("flow", "stream"): -0.05, ("flow", "mix"): +0.02, ("pca_gaussian", "stream"): 0.0})
    compared = A.comparisons(table, margin=0.01)
    verdict = dict(zip(compared["label"], compared["verdict"]))
    assert verdict == {"flow stream": "lower", "flow real + 50% synthetic": "higher",
                       "pca_gaussian stream": "equivalent"}
    # three seeds of a noisy arm with no effect: no difference found, and no equivalence claimed either
    noisy = grid({("flow", "stream"): 0.0}, seeds=range(3), noise=0.02, seed=3)
    assert A.comparisons(noisy, margin=0.01)["verdict"].tolist() == ["inconclusive"]


def test_multiplier_is_given_with_a_ci_only_where_the_real_curve_rises():
    table = grid({("flow", "stream"): -0.05})                     # 0.75: between N=100 and N=1000 on the curve
    summary = A.summary(table, A.comparisons(table, margin=0.01), sizes=[1000])
    row = summary.set_index("label").loc["flow stream"]
    assert row["n_eff_status"] == "given" and 100 < row["n_eff"] < 1000 and "×" in row["worth (N_eff / N)"]
    flat = grid({("flow", "stream"): +0.03}, curve={100: 0.70, 1000: 0.80, 10000: 0.805})
    row = A.summary(flat, A.comparisons(flat, margin=0.01), sizes=[1000]).set_index("label").loc["flow stream"]
    assert row["n_eff_status"] == "above"                          # above the curve's end: never extrapolated
    flat = grid({("flow", "stream"): +0.002}, curve={100: 0.70, 1000: 0.80, 10000: 0.8025}, noise=0.0005)
    row = A.summary(flat, A.comparisons(flat, margin=0.01), sizes=[1000]).set_index("label").loc["flow stream"]
    assert row["n_eff_status"] == "flat" and "does not rise" in row["worth (N_eff / N)"]


def test_budget_check_reads_validation_and_states_the_gap():
    table = grid({})
    doubled = table[(table["arm"] == "real") & (table["n"] == 10000)].assign(budget_factor=2, steps=800)
    at_plateau = pd.concat([table, doubled])
    checks = A.budget_checks(at_plateau, [10000])
    assert bool(checks["at_plateau"].iloc[0]) and "at plateau" in checks["verdict"].iloc[0]
    climbing = pd.concat([table, doubled.assign(val_accuracy=doubled["val_accuracy"] + 0.03)])   # > the ±0.012 CI
    check = A.budget_checks(climbing, [10000]).iloc[0]
    assert not check["at_plateau"] and check["gain"] == pytest.approx(0.03) and "not at plateau" in check["verdict"]
    # the test column is not what it reads: a test-only gain leaves the verdict alone
    test_only = pd.concat([table, doubled.assign(test_accuracy=doubled["test_accuracy"] + 0.05)])
    assert bool(A.budget_checks(test_only, [10000])["at_plateau"].iloc[0])
    assert len(A.main_cells(climbing)) == len(table)


def test_findings_name_every_verdict():
    table = grid({("flow", "stream"): -0.05, ("flow", "mix"): +0.02})
    compared = A.comparisons(table, margin=0.01)
    text = "\n".join(A.findings(A.summary(table, compared, sizes=[1000]), compared, pd.DataFrame(columns=["verdict"]),
                                margin=0.01))
    assert "below real: flow stream" in text and "above real: flow real + 50% synthetic" in text
    assert "Holm" in text
