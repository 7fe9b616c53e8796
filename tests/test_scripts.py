"""The issue-17 scripts (scripts/flow_sampler_cas.py, scripts/generator_curves.py) on the smoke profile: they run end
to end, write the rows their reports read, pair samplers on seeds, and refuse bad arguments before any compute."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthstudy import config

ROOT = Path(__file__).resolve().parent.parent


def script(name, *args, results):
    env = {**os.environ, "SYNTHSTUDY_RESULTS": str(results), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_flow_sampler_cas_pairs_the_reflowed_flow_with_the_reference_on_seeds(isolated_results):
    done = script("flow_sampler_cas.py", "--profile", "smoke", "--samplers", "heun:4:1.5", "reflow/euler:1",
                  "heun:4@0.0001", "--seeds", "0", "1", "--reflow-steps", "3", "--reflow-pairs", "64", "--tag", "t",
                  results=isolated_results)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(isolated_results / "smoke" / "flow_samplers" / "cas-t.csv")
    # full names: guidance filled in, the reflow budget in the name (rows of other models never pair)
    assert sorted(zip(rows["sampler"], rows["seed"])) == [("heun:4:1.5", 0), ("heun:4:1.5", 1),
                                                           ("heun:4:1.5@judge0.0001", 0), ("heun:4:1.5@judge0.0001", 1),
                                                           ("reflow3x64/euler:1:1", 0), ("reflow3x64/euler:1:1", 1)]
    # guidance doubles the batch: Heun 4 with guidance is 16 evaluations per image, the reflowed Euler step 1;
    # the filter's rejected draws are counted in its cost (16 / acceptance)
    evaluations = dict(zip(rows["sampler"], rows["evaluations"]))
    assert evaluations["heun:4:1.5"] == 16 and evaluations["reflow3x64/euler:1:1"] == 1
    # a filtered sampler records its pool's acceptance (the unfiltered ones none: NaN), so an unwrapped run shows
    filtered = rows[rows["sampler"] == "heun:4:1.5@judge0.0001"]
    assert rows[rows["sampler"] != "heun:4:1.5@judge0.0001"]["acceptance"].isna().all()
    assert ((filtered["acceptance"] > 0) & (filtered["acceptance"] <= 1)).all()
    assert np.allclose(filtered["evaluations"], 16 / filtered["acceptance"])
    report = script("flow_sampler_cas.py", "--profile", "smoke", "--report", results=isolated_results)
    assert report.returncode == 0, report.stderr[-2000:]
    comparisons = pd.read_csv(isolated_results / "smoke" / "flow_samplers" / "comparisons.csv")
    assert sorted(comparisons["sampler"]) == ["heun:4:1.5@judge0.0001", "reflow3x64/euler:1:1"]
    assert list(comparisons["pairs"]) == [2, 2]
    assert set(comparisons["reference"]) == {"heun:4:1.5"} and set(comparisons["margin"]) == {0.01}
    # the same sampler recorded again in another file: the report refuses rather than pick one row per seed
    (isolated_results / "smoke" / "flow_samplers" / "cas-t.csv").rename(
        isolated_results / "smoke" / "flow_samplers" / "cas-copy.csv")
    rows.to_csv(isolated_results / "smoke" / "flow_samplers" / "cas-t.csv", index=False)
    again = script("flow_sampler_cas.py", "--profile", "smoke", "--report", results=isolated_results)
    assert again.returncode != 0 and "recorded in more than one file" in again.stderr


def test_flow_sampler_cas_names_another_flow_budget_in_its_rows(isolated_results):
    steps = config.load_profile("smoke")["gen_steps"]["flow"] * 2
    done = script("flow_sampler_cas.py", "--profile", "smoke", "--samplers", "heun:2", "--seeds", "0",
                  "--gen-steps", str(steps), "--tag", "longer", results=isolated_results)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(isolated_results / "smoke" / "flow_samplers" / "cas-longer.csv")
    assert list(rows["sampler"]) == [f"flow{steps}/heun:2:1.5"]       # never mixed with the profile's flow's rows
    stream = script("flow_sampler_cas.py", "--profile", "smoke", "--samplers", "heun:2", "--seeds", "0",
                    "--gen-steps", str(steps), "--arm", "stream", "--tag", "stream", results=isolated_results)
    assert stream.returncode == 0, stream.stderr[-2000:]
    rows = pd.read_csv(isolated_results / "smoke" / "flow_samplers" / "cas-stream.csv")
    assert list(rows["sampler"]) == [f"flow{steps}/stream/heun:2:1.5"]    # nor are the stream arm's


@pytest.mark.parametrize("args, message", [
    (["--samplers", "rk4:4"], "--samplers 'rk4:4': allowed: \\[reflow/\\]solver:steps"),
    (["--samplers", "reflow/euler:1:1.5"], "\\(1 for reflow/\\)"),
    (["--samplers", "heun:0"], "steps a positive integer"),
    (["--samplers", "heun:4:nan"], "guidance a finite number >= 1"),
    (["--samplers", "heun:²"], "steps a positive integer"),
    (["--samplers", "heun:4@1"], "threshold after @ must be a probability in \\(0, 1\\)"),
    (["--samplers", "heun:4@x"], "threshold after @ must be a probability"),
    (["--samplers", "heun:4@0.50000001"], "at most 6 significant digits"),
    (["--margin", "0"], "--margin 0.0: allowed"),
    (["--gen-steps", "0"], "--gen-steps: allowed values are positive integers"),
    (["--seeds", "0", "0"], "distinct seeds"),
    (["--arm", "mix"], "--arm: invalid choice: 'mix'"),
    (["--report"], "no rows under"),
])
def test_flow_sampler_cas_refuses_bad_arguments_before_any_compute(isolated_results, args, message):
    done = script("flow_sampler_cas.py", "--profile", "smoke", *args, results=isolated_results)
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr[-1000:]
    assert not (isolated_results / "smoke" / "flow_samplers").exists()


def test_generator_curves_records_a_variant_per_training_seed_with_its_cas(isolated_results):
    done = script("generator_curves.py", "--profile", "smoke", "--families", "cgan", "--steps", "4",
                  "--label", "cgan-ms", "--config", "mode_seeking=1", "minibatch_std=true", "--gen-seeds", "0", "1",
                  "--cas-seeds", "0", results=isolated_results)
    assert done.returncode == 0, done.stderr[-2000:]
    out = isolated_results / "smoke" / "generator_curves"
    rows = pd.read_csv(out / "curves-cgan-ms.csv")
    assert list(rows["gen_seed"]) == [0, 1] and set(rows["family"]) == {"cgan"}
    assert rows["config"].iloc[0] == '{"minibatch_std": true, "mode_seeking": 1}'
    assert rows["fid"].iloc[0] != rows["fid"].iloc[1]            # another training seed, another model
    assert all(0 <= float(v) <= 1 for v in rows["cas_val"])
    assert (out / "curves.csv").is_file() and (out / "figures" / "generator_fid_curves.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--families", "cgan", "--label", "x", "--config", "widht=32"], "--config: generator='cgan' has no config key"),
    (["--families", "cgan", "--config", "mode_seeking"], "allowed: KEY=VALUE"),
    (["--families", "cgan", "--config", "augment=mixup"], "the value is not JSON"),
    (["--families", "cgan", "cvae", "--label", "x"], "exactly one of --families"),
    (["--families", "diffusion"], "allowed values: cgan, cvae, flow, pca_gaussian"),
    (["--families", "cgan", "--config", "mode_seeking=1"], "--config: allowed only with a --label"),
    (["--families", "cgan", "--cas-seeds", "0", "0"], "--cas-seeds [0, 0]: allowed: distinct seeds"),
])
def test_generator_curves_refuses_bad_arguments_before_any_compute(isolated_results, args, message):
    done = script("generator_curves.py", "--profile", "smoke", "--steps", "4", *args, results=isolated_results)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-1000:]
    assert not (isolated_results / "smoke" / "generator_curves").exists()


def test_prdc_controls_put_real_images_at_the_ceiling_and_score_each_latent_scale(isolated_results):
    done = script("prdc_controls.py", "--profile", "smoke", "--family", "cgan", "--steps", "4", "--label", "c",
                  "--scales", "1", "2", results=isolated_results)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(isolated_results / "smoke" / "generator_curves" / "prdc_controls-c.csv")
    assert rows["sample"].tolist() == ["real pool", "c 4 steps", "c 4 steps"]
    assert rows["latent_scale"].tolist()[1:] == [1.0, 2.0]
    real, fitted = rows.iloc[0], rows.iloc[1]
    # held-out real images against real ones: the ceiling a 4-step GAN is far below
    assert real["coverage"] > 0.8 and real["coverage"] > fitted["coverage"] + 0.3
    assert rows.iloc[1]["fid"] != rows.iloc[2]["fid"]                   # the scale changed the samples


@pytest.mark.parametrize("args, message", [
    (["--scales", "0"], "--scales [0.0]: allowed values are numbers > 0"),
    (["--config", "widht=3"], "--config: generator='cgan' has no config key"),
    (["--family", "biggan"], "invalid choice: 'biggan'"),
])
def test_prdc_controls_refuse_bad_arguments_before_any_compute(isolated_results, args, message):
    done = script("prdc_controls.py", "--profile", "smoke", "--steps", "4", *args, results=isolated_results)
    assert done.returncode != 0 and message in done.stderr, done.stderr[-1000:]
    assert not (isolated_results / "smoke").exists()
