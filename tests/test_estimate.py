"""synthstudy.estimate: the work it counts is the work the notebooks build, every unit it counts is priced, and the
profiles come out in the order of their size."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from synthstudy import config, estimate, reproduce, runs, train

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
# seconds per unit on the 2-core reference VM, rounded (what a calibration there measured): fixed, so the tests
# need no timing
REFERENCE = {"train_image": 2e-4, "forward_image": 7e-5, "pair": 4e-4, "augment_image": 7e-6, "distance": 1e-11,
             "probe_image": 2e-4, "pca_image": 2e-5, "quality_pair": 2.4e-7, "cell": estimate.CELL_SECONDS,
             "notebook": estimate.NOTEBOOK_SECONDS}


def reference_costs(plans) -> estimate.Costs:
    units = set().union(*(p.work for p in plans))
    seconds = {u: REFERENCE.get(u, 1e-3 if u.startswith(("sample:", "sample500:")) else 0.03) for u in units}
    return estimate.Costs(seconds, "fixed for the test", "reference")


@pytest.fixture(scope="module")
def smoke_params():
    return estimate.parameters("smoke")


def notebook_key_code(name: str, first: str, last: str) -> str:
    """The lines of notebooks/<name>.py from the one starting with `first` up to (not including) `last`: the
    notebook's own code that builds a grid's keys."""
    lines = (NOTEBOOK_DIR / f"{name}.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith(last))
    return "\n".join(lines[start:end])


def notebook_classifier_keys(params) -> list[dict]:
    """The classifier keys baseline, generators and scaling build, by running their own key-building code."""
    from synthstudy import cells
    keys = []
    for name, first, last, names in (("baseline", "keys = cells.baseline_keys", "records = run.grid", ("keys",)),
                                     ("generators", "cas_keys = cells.cas", "cas_records = run.grid", ("cas_keys",)),
                                     ("scaling", "keys = cells.scaling_keys", "records = run.grid", ("keys",))):
        P = params[name]
        namespace = {"P": P, "cells": cells, "n_all": config.pool_size(P)}
        if name == "scaling":
            namespace["sizes"] = P.resolved_sizes()
        exec(notebook_key_code(name, first, last), namespace)      # noqa: S102 -- the notebooks' own source
        keys += [k for n in names for k in namespace[n]]
    return keys


def test_counted_classifier_cells_are_the_distinct_keys_the_notebooks_build(smoke_params):
    built = {runs.stable_hash(k) for k in notebook_classifier_keys(smoke_params)}
    plans = estimate.plan(smoke_params)
    counted = [runs.stable_hash(k) for p in plans for k in p.classifier_keys]
    assert len(counted) == len(set(counted))                     # each cell once, however many notebooks list it
    assert set(counted) == built
    by_name = {p.name: p for p in plans}
    assert sum(p.counts["classifier cells"] for p in plans) == len(built)
    # the scaling notebook's real arm is the baseline's grid: reused, not trained twice
    assert by_name["scaling"].reused["classifier cells"] > 0


def test_multiview_counts_cells_whatever_sigma_star_is(smoke_params):
    P = smoke_params["multiview"]
    seeds, method_seeds = len(P.seeds), len(P.seeds) + len(P.mv_extra_seeds)
    # the floor's initialisations, real SimCLR and SupCon per method seed, real 2x; the sweep; at sigma*: 2x, the
    # control's conditional and label-free arms (the headline at sigma* is a sweep cell); the anchor pools
    control_differs = P.control_generator != P.generator
    assert P.mv_floor_inits > 1                                          # smoke exercises the floor's average
    expected = ((P.mv_floor_inits + 2) * method_seeds + seeds + len(P.sigmas) * seeds + seeds + len(P.mv_extra_seeds)
                + method_seeds * (1 + control_differs) + len(P.anchor_pools) * seeds)
    assert len(estimate.multiview_keys(P)) == expected
    plan = estimate.plan({"multiview": P})[0]
    assert plan.counts["encoder cells"] == expected


def test_generators_are_fitted_once_across_notebooks(smoke_params):
    plans = {p.name: p for p in estimate.plan(smoke_params)}
    # the generators notebook fits the zoo on the pool; multiview and audits load those models
    assert plans["generators"].counts["generator fits"] == len(smoke_params["generators"].generator_names)
    assert plans["multiview"].counts["generator fits"] == 0
    P = smoke_params["scaling"]
    fits = {(g, n, s) for g in P.scaling_generators for n in P.resolved_sizes() if n != config.pool_size(P)
            for s in P.seeds}
    assert plans["scaling"].counts["generator fits"] == len(fits)


def test_every_counted_unit_is_priced_by_the_calibration(smoke_params):
    plans = estimate.plan(smoke_params)
    costs = estimate.calibrate(smoke_params, plans, target=0.02)
    used = set().union(*(p.work for p in plans))
    assert used <= set(costs.seconds), f"units without a measured cost: {sorted(used - set(costs.seconds))}"
    assert all(costs.seconds[u] > 0 for u in used)
    # how long calibrating takes depends on the machine's load (75 s seen beside a busy run): not asserted here
    assert "CPU" in costs.machine and costs.calibration_seconds > 0


def test_paper_costs_more_than_quick_and_quick_more_than_smoke():
    totals = {}
    for profile in ("smoke", "quick", "paper"):
        plans = estimate.plan(estimate.parameters(profile))
        totals[profile] = estimate.Estimate(profile, plans, reference_costs(plans), False).total()
    assert totals["paper"] > 3 * totals["quick"] > 3 * totals["smoke"] > 0


def test_tta_views_counts_the_forward_passes_of_train_tta_logits():
    calls = Counter()

    class Counting(torch.nn.Module):
        def forward(self, x):
            calls["n"] += 1
            return x.flatten(1)[:, :3]

    x = torch.zeros(2, 1, 8, 8)
    for tta in train.TTA:
        for augment in train.AUGMENTATIONS:
            calls.clear()
            train.tta_logits(Counting(), x, train.TrainConfig(tta=tta, augment=augment, progress=False))
            assert estimate.tta_views(tta, augment) == calls["n"], (tta, augment)


def test_recorded_cells_are_left_out_of_what_is_left(smoke_params, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHSTUDY_RESULTS", str(tmp_path))
    first = estimate.plan(smoke_params, profile="smoke")
    key = first[0].classifier_keys[0]
    cell = runs.Run("baseline", "smoke", {}, root=tmp_path).cell_dir(key)
    runs.write_json(cell / "record.json", {"key": key, "metrics": {}, "seconds": 1.0})
    left = estimate.plan(smoke_params, profile="smoke")
    assert left[0].counts["classifier cells"] == first[0].counts["classifier cells"] - 1
    assert left[0].reused["finished cells"] == 1
    assert estimate.plan(smoke_params)[0].counts["classifier cells"] == first[0].counts["classifier cells"]


def test_bad_profiles_and_parameters_are_refused(capsys):
    assert estimate.main(["--profile", "nope"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert estimate.main(["--profile", "smoke", "-p", "mv_steps", "0"]) == 2
    assert reproduce.main(["--profile", "nope", "--estimate"]) == 2


def test_reproduce_estimate_prints_the_table_and_runs_nothing(monkeypatch, capsys):
    monkeypatch.setattr(estimate, "calibrate", lambda params, plans, **_: reference_costs(plans))
    monkeypatch.setattr(reproduce, "execute", lambda *a, **k: pytest.fail("--estimate ran a notebook"))
    assert reproduce.main(["--profile", "smoke", "--estimate"]) == 0
    out = capsys.readouterr().out
    for name in reproduce.STUDY:
        assert re.search(rf"^{name}\s+\d+", out, re.MULTILINE), out
    assert re.search(r"^total .*±25%", out, re.MULTILINE)


def test_record_costs_read_the_units_a_finished_run_timed(smoke_params, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHSTUDY_RESULTS", str(tmp_path))
    P = smoke_params["scaling"]
    run = runs.Run("scaling", "smoke", {}, device="cpu", root=tmp_path)
    keys = estimate.plan({"scaling": P})[0].classifier_keys
    real = next(k for k in keys if k["arm"] == "real")
    stream = next(k for k in keys if k["arm"] == "stream")
    views = (P.val_size + estimate.DATASET_FACTS["digits"][1]) * estimate.tta_views(P.tta, P.augment)
    seconds = 2.0 + estimate.CELL_SECONDS + 1e-3 * views           # training, the cell's fixed cost, evaluation
    runs.write_json(run.cell_dir(real) / "record.json", {"key": real, "seconds": seconds,
                                                         "metrics": {"train_seconds": 2.0, "images_seen": 1000}})
    runs.write_json(run.cell_dir(stream) / "record.json", {"key": stream, "seconds": 9.0,
                    "metrics": {"train_seconds": 5.0, "images_seen": 1000}})
    costs = estimate.record_costs("smoke", device=train.resolve_device("cpu"))
    assert costs["train_image"] == pytest.approx(2e-3)
    assert costs["forward_image"] == pytest.approx(1e-3)
    assert costs[f"sample:{stream['generator']}"] == pytest.approx(3e-3)
    # another machine's records are not this one's costs
    env = run.dir / "environment.json"
    runs.write_json(env, {**__import__("json").loads(env.read_text()), "cpu_model": "another CPU"})
    assert estimate.record_costs("smoke", device=train.resolve_device("cpu")) == {}


def test_record_costs_count_a_generator_record_only_on_the_device_kind_it_names(tmp_path, monkeypatch):
    # paper's generators folder holds an H200's fits beside a CPU's; the folder's environment is the last run's
    monkeypatch.setenv("SYNTHSTUDY_RESULTS", str(tmp_path))
    run = runs.Run("generators", "smoke", {}, device="cpu", root=tmp_path)
    for name, device in (("cvae", "cpu"), ("cgan", "cuda:0"), ("flow", None)):
        key = {"generator": name, "dataset": "digits", "gen_steps": 100, "quality_samples": 50}
        metrics = {"train_seconds": 10.0, "samples_per_s": 500.0,
                   **({"fit_device": device, "sample_device": device} if device else {})}
        runs.write_json(run.cell_dir(key) / "record.json", {"key": key, "seconds": 11.0, "metrics": metrics})
    costs = estimate.record_costs("smoke", device=train.resolve_device("cpu"))
    assert costs["gen_step:cvae"] == pytest.approx(0.1) and costs["sample500:cvae"] == pytest.approx(1 / 500)
    assert "gen_step:cgan" not in costs and "sample500:cgan" not in costs       # the GPU's record
    assert "gen_step:flow" in costs and "sample500:flow" in costs               # older than the fields: counted
    assert "gen_step:cgan" in estimate.record_costs("smoke")                    # no device asked: every record


def test_audits_keys_are_the_notebooks_keys(smoke_params):
    """The audits notebook's privacy and bias keys, built by its own code, equal `estimate.audits_keys` (which finds
    a resumed run's finished cells by them)."""
    from synthstudy import generators
    from synthstudy.audits import bias, cells, privacy
    P = smoke_params["audits"]
    _, pool, _ = cells.study_data(P.dataset, P.val_size)
    namespace = {"P": P, "cells": cells, "privacy": privacy, "generators": generators, "bias": bias, "pool": pool,
                 "K": 10}
    for first, last in (("common = cells.common_key", "extractor = cells.domain_extractor"),
                        ("privacy_keys = cells.privacy_keys", "privacy_records = run.grid"),
                        ("bias_keys = cells.bias_keys", "bias_records = run.grid")):
        exec(notebook_key_code("audits", first, last), namespace)   # noqa: S102 -- the notebook's own source
    privacy_keys, bias_keys = estimate.audits_keys(P)
    assert privacy_keys == namespace["privacy_keys"]
    assert bias_keys == namespace["bias_keys"]


def test_resumed_multiview_uses_the_sigma_the_sweep_chose(smoke_params, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHSTUDY_RESULTS", str(tmp_path))
    P = smoke_params["multiview"]
    run = runs.Run("multiview", "smoke", {}, device="cpu", root=tmp_path)
    best = P.sigmas[-1]
    from synthstudy import contrastive
    for s in P.sigmas:
        for seed in P.seeds:
            key = contrastive.multiview_key(P, "synthetic", "simclr", "latent", seed, sigma=s)
            runs.write_json(run.cell_dir(key) / "record.json", {"key": key, "seconds": 1.0, "metrics": {
                "probe_accuracy_val": 0.9 if s == best else 0.5, "probe_accuracy_test": 0.5}})
    assert estimate.sigma_star_from_records(P, "smoke") == best
    left = estimate.plan({"multiview": P}, profile="smoke")[0]
    assert left.reused["finished cells"] == len(P.sigmas) * len(P.seeds)
    headline = [k for k in estimate.multiview_keys(P, best) if k["sigma"] == best and k["anchors"] is not None]
    assert headline, "the anchor pools are keyed at the chosen sigma"


def test_validation_reads_first_runs_only(tmp_path, monkeypatch):
    import json
    monkeypatch.setenv("SYNTHSTUDY_RESULTS", str(tmp_path))
    log = tmp_path / "quick" / "reproduce.jsonl"
    log.parent.mkdir(parents=True)
    lines = [{"notebook": "baseline", "seconds": 100.0},
             {"notebook": "audits", "seconds": 30.0, "cells_computed": 3, "cells_total": 36},   # a resumed run
             {"notebook": "baseline", "seconds": 4.0, "cells_computed": 0, "cells_total": 24}]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    measured = estimate.measured_seconds("quick")
    assert set(measured) == {"baseline"} and measured["baseline"]["seconds"] == 100.0
