"""`make bench` end to end on tiny data: the printed table, the JSON record, budget scaling, the generator rows."""
import json

import pytest

from synthstudy import bench


def test_bench_scaled_budget_trains_above_chance_and_keeps_other_points(isolated_results, capsys):
    # --as-if-peak 1 shrinks the 120 s budget to 120 / peak s (well under a second here): the digits classifier
    # still takes many steps in that time
    assert bench.main(["--dataset", "digits", "--points", "2min", "--seeds", "0", "1", "--as-if-peak", "1"]) == 0
    out = capsys.readouterr().out
    assert "fp32 matmul peak on" in out and "| 2min as if 1 GFLOP/s (≤ " in out
    record = json.loads((isolated_results / "bench" / "bench.json").read_text())
    rows = record["rows"]
    assert [r["seed"] for r in rows] == [0, 1]
    assert all(r["max_seconds"] < 120 * 2 / r["peak_gflops"] for r in rows)      # the budget was scaled
    assert all(r["test_accuracy"] > 0.5 and r["gflops"] > 0 and r["cpu_model"] for r in rows)  # chance is 0.1
    # a run of another point adds its rows next to these instead of replacing them
    assert bench.main(["--dataset", "digits", "--points", "5min", "--seeds", "0", "--as-if-peak", "1"]) == 0
    points = [r["point"] for r in json.loads((isolated_results / "bench" / "bench.json").read_text())["rows"]]
    assert points == ["2min as if 1 GFLOP/s"] * 2 + ["5min as if 1 GFLOP/s"]
    kept_table = (isolated_results / "bench" / "bench.md").read_text()
    assert "| 2min as if 1 GFLOP/s" in kept_table and "| 5min as if 1 GFLOP/s" in kept_table


def test_bench_generator_rows_on_the_smoke_profile(isolated_results, capsys):
    assert bench.main(["--no-classifier", "--generators", "--gen-profile", "smoke", "--gen-samples", "100"]) == 0
    record = json.loads((isolated_results / "bench" / "bench.json").read_text())
    assert [r["generator"] for r in record["generator_rows"]] == ["pca_gaussian", "cvae", "cgan", "flow"]
    assert all(r["samples_per_s"] > 0 and r["fit_seconds"] >= 0 for r in record["generator_rows"])
    assert "rows" not in record                                     # no classifier point was run


@pytest.mark.parametrize("argv, message", [(["--gen-samples", "0"], "--gen-samples"),
                                           (["--as-if-peak", "-5"], "--as-if-peak"),
                                           (["--dataset", "mnist"], "--dataset")])
def test_bench_refuses_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
