"""Every notebook executes end to end on the smoke profile, and its committed .ipynb matches its .py source."""
import json
import shutil
from pathlib import Path

import jupytext
import numpy as np
import pandas as pd
import pytest

from synthstudy import reproduce

NOTEBOOKS = reproduce.NOTEBOOKS          # the study's notebooks and the report
ROOT = Path(__file__).resolve().parent.parent


def assert_ran_and_recorded(executed: Path, run_dir: Path):
    """What every study notebook leaves behind on smoke: the executed copy with papermill's injected parameters,
    the run's parameters and machine, a non-empty metrics table and at least one figure."""
    assert executed.is_file()
    assert (run_dir / "params.json").is_file() and (run_dir / "environment.json").is_file()
    assert len(pd.read_csv(run_dir / "metrics.csv")) > 0
    assert list((run_dir / "figures").glob("*.png")), "the notebook wrote no figure"
    tags = [c.get("metadata", {}).get("tags", []) for c in json.loads(executed.read_text())["cells"]]
    assert any("injected-parameters" in t for t in tags)


@pytest.fixture(scope="session")
def smoke_baseline(tmp_path_factory):
    """The baseline notebook run once on smoke (several tests need its records); tests copy it, never modify it."""
    root = tmp_path_factory.mktemp("baseline") / "results"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHSTUDY_RESULTS", str(root))
        executed = reproduce.execute("baseline", "smoke", progress=False)
    return executed, root / "smoke" / "baseline"


def copy_baseline(smoke_baseline, isolated_results) -> Path:
    target = isolated_results / "smoke" / "baseline"
    shutil.copytree(smoke_baseline[1], target)
    return target


# baseline and scaling have their own, stricter tests below
@pytest.mark.notebook
@pytest.mark.parametrize("name", [n for n in reproduce.STUDY if n not in ("baseline", "scaling")])
def test_notebook_runs_on_smoke_and_records_its_cells(name, isolated_results):
    executed = reproduce.execute(name, "smoke", progress=False)
    assert_ran_and_recorded(executed, isolated_results / "smoke" / name)
    # the wall time of the execution is logged, with the CPU that took it (README timings come from this log)
    timing = [json.loads(line) for line in (isolated_results / "smoke" / "reproduce.jsonl").read_text().splitlines()]
    assert [t["notebook"] for t in timing] == [name] and timing[0]["seconds"] > 0 and timing[0]["cpu_model"]
    if name == "generators":          # each fit's time is shown with the device it ran on
        summary = pd.read_csv(isolated_results / "smoke" / name / "summary.csv", keep_default_na=False)
        assert set(summary.loc[summary["arm"] != "real", "fit on"]) == {"cpu"}
        assert set(summary.loc[summary["arm"] != "real", "sampled on"]) == {"cpu"}
        # each quality cell kept its samples, 8 per class in class order: a rerun on a machine whose generator cache
        # is empty (the records came from elsewhere) draws the figure from them and fits nothing
        grids = list((isolated_results / "smoke" / name / "cells").glob("generator=*/samples.npy"))
        assert len(grids) == len(summary) - 1
        assert all(np.load(g).shape[:2] == (80, 1) and np.load(g).dtype == np.uint8 for g in grids)
        shutil.rmtree(isolated_results / "cache" / "generators")
        reproduce.execute(name, "smoke", progress=False)
        assert not list((isolated_results / "cache" / "generators").glob("*/artifact.pt")), "a generator was refitted"
        # a record older than the grids gets one from its family's fit (here the PCA-Gaussian's), kept for next time
        (older,) = (g for g in grids if "generator=pca_gaussian" in str(g))
        older.unlink()
        reproduce.execute(name, "smoke", progress=False)
        assert older.is_file() and len(list((isolated_results / "cache" / "generators").glob("*/artifact.pt"))) == 1


@pytest.mark.notebook
def test_report_reads_the_records_and_writes_html_without_touching_the_repo(smoke_baseline, isolated_results):
    copy_baseline(smoke_baseline, isolated_results)
    # the committed paper baseline beside it: the page shows the headline and that profile's section too
    shutil.copytree(ROOT / "results" / "paper" / "baseline", isolated_results / "paper" / "baseline")
    figures_before = sorted(p.name for p in (ROOT / "figures").glob("*"))
    readme_before = (ROOT / "README.md").read_text()
    reproduce.execute("report", "smoke", progress=False)
    html = (isolated_results / "smoke" / "report" / "report.html").read_text()
    assert "Real-data baseline" in html and "| 50 |" not in html          # the table is rendered, not raw markdown
    assert "baseline_accuracy_vs_n" in html and "data:image/png;base64" in html   # figures embedded
    assert "Headline: the <code>paper</code> profile" in html and "The <code>paper</code> profile" in html
    assert "How high does real data go?" in html and "(paper)" in html
    # the smoke profile publishes nothing: figures/ and README.md are as they were
    assert sorted(p.name for p in (ROOT / "figures").glob("*")) == figures_before
    assert (ROOT / "README.md").read_text() == readme_before


def test_report_without_records_says_what_to_run(isolated_results):
    import papermill
    with pytest.raises(papermill.PapermillExecutionError, match="make reproduce PROFILE=smoke"):
        reproduce.execute("report", "smoke", progress=False)
    # the stopped execution is logged, with why, so a run resumed later is timed as the sum of its pieces
    (line,) = [json.loads(t) for t in (isolated_results / "smoke" / "reproduce.jsonl").read_text().splitlines()]
    assert line["notebook"] == "report" and line["interrupted"] == "PapermillExecutionError"
    assert line["cells_before"] == 0 and line["seconds"] > 0 and "gpu" not in line      # a CPU here


@pytest.mark.notebook
def test_baseline_smoke_numbers_are_sane_and_a_rerun_reuses_every_cell(smoke_baseline, isolated_results):
    assert_ran_and_recorded(*smoke_baseline)
    table = pd.read_csv(smoke_baseline[1] / "metrics.csv")
    assert sorted(table["n"].unique()) == [50, 200] and sorted(table["seed"].unique()) == [0, 1, 2]
    assert table["test_accuracy"].between(0, 1).all()
    # rerun on a copy of the records: every cell is reused, nothing retrained
    run_dir = copy_baseline(smoke_baseline, isolated_results)
    before = {p: p.stat().st_mtime for p in (run_dir / "cells").glob("*/record.json")}
    reproduce.execute("baseline", "smoke", progress=False)
    after = {p: p.stat().st_mtime for p in (run_dir / "cells").glob("*/record.json")}
    assert before == after and len(before) == 6 + 3          # 2 sizes x 3 seeds + the budget check at N=200
    checks = pd.read_csv(smoke_baseline[1] / "budget_check.csv")
    assert checks["n"].tolist() == [200] and checks["verdict"].str.contains("plateau").all()
    budget = table.loc[table["budget_factor"].isna() & (table["n"] == 200), "steps"].iloc[0]
    assert (table.loc[table["budget_factor"] == 2, "steps"] == 2 * budget).all()


@pytest.mark.notebook
def test_scaling_smoke_has_every_arm_and_reuses_the_baseline_and_its_own_cells(smoke_baseline, isolated_results):
    # the baseline's records first (N = 50, 200): the scaling notebook's real curve must take those cells from them
    copy_baseline(smoke_baseline, isolated_results)
    executed = reproduce.execute("scaling", "smoke", progress=False)
    run_dir = isolated_results / "smoke" / "scaling"
    assert_ran_and_recorded(executed, run_dir)
    table = pd.read_csv(run_dir / "metrics.csv")
    # smoke: N in {100, all = 1248}; budgets 10 steps at N=100 (the floor) and 20 at N=1248 (1 epoch of 64); pools
    # M = 1N, 10N are clipped to the images a classifier sees (640, 1280), and a pool of exactly that size (each
    # image seen once) is the stream's measurement, so it is not run twice
    synthetic = {100: ["pool M=100", "stream", "real + 50% synthetic"],
                 1248: ["pool M=1248", "stream", "real + 50% synthetic"]}
    expected = {("none", "real", n, s) for n in (50, 100, 200, 1248) for s in (0, 1, 2)}
    expected |= {(g, v, n, s) for n, variants in synthetic.items() for v in variants
                 for g in ("pca_gaussian", "cvae") for s in (0, 1, 2)}
    main = table[table["budget_factor"].isna()]
    assert set(zip(main["generator"], main["variant"], main["n"], main["seed"])) == expected
    assert len(main) == len(expected) and table["test_accuracy"].between(0, 1).all()
    assert len(table) == len(expected) + 3                           # + the baseline's budget check, reused
    real = main[main["arm"] == "real"].set_index(["n", "seed"])
    baseline = pd.read_csv(isolated_results / "smoke" / "baseline" / "metrics.csv")
    baseline = baseline[baseline["budget_factor"].isna()].set_index(["n", "seed"])
    for n in (50, 200):
        assert (real.loc[n, "reused_from"] == "baseline").all()
        assert real.loc[n, "test_accuracy"].tolist() == baseline.loc[n, "test_accuracy"].tolist()
    assert real.loc[[100, 1248], "reused_from"].isna().all()                    # trained here
    # a mix cell saw the real arm's whole batch plus as many synthetic images (50% of the combined batch)
    mix = main[main["arm"] == "mix"]
    assert (mix["images_seen"] == 2 * mix["steps"] * 64).all()
    summary = pd.read_csv(run_dir / "summary.csv")
    verdicts = summary["vs real (paired)"].str.extract(r"pts, (\w+)")[0].dropna()
    assert set(verdicts) <= {"higher", "lower", "equivalent", "inconclusive"} and len(verdicts) > 0
    assert len(summary) == 2 + 2 * sum(len(variants) for variants in synthetic.values())
    compared = pd.read_csv(run_dir / "comparisons.csv")
    assert (compared["p_holm"] >= compared["p"] - 1e-12).all() and set(compared["question"]) == {"vs real", "vs stream"}
    assert {p.stem for p in (run_dir / "figures").glob("*.png")} >= {"scaling_accuracy_vs_n",
                                                                     "scaling_paired_differences"}
    # rerun: every cell is reused, nothing retrained
    records = sorted((run_dir / "cells").glob("*/record.json"))
    before = {p: p.stat().st_mtime for p in records}
    reproduce.execute("scaling", "smoke", progress=False)
    assert {p: p.stat().st_mtime for p in (run_dir / "cells").glob("*/record.json")} == before
    assert len(before) == len(expected) + 3                # + the reused budget-check cells


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_ipynb_is_paired_without_outputs(name):
    py = jupytext.read(ROOT / "notebooks" / f"{name}.py")
    ipynb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    assert [c["source"] for c in py.cells] == ["".join(c["source"]) for c in ipynb["cells"]], \
        "notebooks/*.ipynb is out of date: run `make sync`"
    assert all(not c.get("outputs") and not c.get("execution_count") for c in ipynb["cells"]
               if c["cell_type"] == "code"), "strip outputs: executed copies belong under results/"
    tagged = [c for c in ipynb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1


def test_quick_profile_equals_the_parameters_cell_defaults():
    """Run All in JupyterLab must reproduce the quick profile: the cell's defaults are configs/quick.yaml."""
    import papermill

    from synthstudy import config
    quick = config.load_profile("quick")
    for name in NOTEBOOKS:
        declared = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        for key, spec in declared.items():
            if key in quick:
                assert eval(spec["default"]) == quick[key], f"{name}: {key}"


def test_reproduce_refuses_bad_profile_and_notebook_names(capsys):
    assert reproduce.main(["--profile", "fast"]) == 2
    assert "profile='fast'" in capsys.readouterr().err
    assert reproduce.main(["--profile", "smoke", "--notebooks", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert reproduce.main(["--profile", "smoke", "-p", "stepz", "5"]) == 2
    err = capsys.readouterr().err
    assert "stepz" in err and "max_steps" in err      # names the bad override and lists the real ones
    assert reproduce.main(["--profile", "smoke", "--executor", "dask"]) == 2
    assert "executor='dask'" in capsys.readouterr().err


@pytest.mark.parametrize("override,expected", [
    (["seeds", "[0]"], "parameter 'seeds'"),                          # every notebook: fewer than 3 seeds
    (["epochs", "-1"], "parameter 'epochs'"),                         # the budget rule, before any compute
    (["equivalence_margin", "0"], "parameter 'equivalence_margin'"),
    (["rare_fraction", "2.0"], "notebook audits"),                    # only the last study notebook has it
    (["generator_names", "[gan]"], "notebook generators"),
])
def test_reproduce_validates_every_notebooks_values_before_running_any(override, expected, capsys,
                                                                        isolated_results):
    assert reproduce.main(["--profile", "smoke", "-p", *override]) == 2
    assert expected in capsys.readouterr().err
    assert not (isolated_results / "smoke").exists()                  # nothing ran, nothing was written


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_passes_every_notebooks_schema(profile):
    declared = reproduce.check_parameters(reproduce.NOTEBOOKS, profile, {})
    assert set(declared) == set(reproduce.NOTEBOOKS)
    # every value in the profile file reaches at least one notebook (no typo silently ignored)
    from synthstudy import config
    used = set().union(*declared.values())
    assert set(config.load_profile(profile)) <= used, set(config.load_profile(profile)) - used


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_papermill_sees_every_parameter(name):
    """papermill silently drops a parameter line it cannot parse (e.g. '=' inside the comment): catch that."""
    import ast

    import papermill
    nb = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {node.target.id for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.AnnAssign)}
    declared = set(papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb")))
    assert assigned == declared
