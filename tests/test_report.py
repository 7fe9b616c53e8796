"""The README's results section is generated from run records only: tables and figures, never typed by hand."""
import pandas as pd
import pytest

from synthstudy import config, report, runs

QUICK = config.load_profile("quick")


def make_run(notebook, rows, summary=None, **overrides):
    """A run folder labelled `quick`, with the quick profile's parameters (plus `overrides`)."""
    run = runs.Run(notebook, "quick", {**QUICK, **overrides}, device="cpu")
    run.write_table(rows)
    if summary is not None:
        runs.write_text(run.dir / "summary.csv", summary.to_csv(index=False))
    return run


def test_report_rewrites_only_the_marked_section(tmp_path, isolated_results):
    make_run("baseline", [{"n": n, "seed": s, "test_accuracy": 0.5 + 0.1 * s} for n in (10, 20) for s in range(3)],
             pd.DataFrame({"n": [10, 20], "test accuracy (%)": ["60.00 ± 24.84", "60.00 ± 24.84"], "seeds": [3, 3]}))
    make_run("generators", [], pd.DataFrame({"arm": ["real", "cvae"], "ratio": [1.0, 0.81234]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold numbers\n{report.END}\noutro\n")
    assert report.main(["--profile", "quick", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old numbers" not in text
    assert "| 10 | 60.00 ± 24.84 | 3 |" in text
    assert "| cvae | 0.812 |" in text and "notebook `generators`" in text
    assert "scaling" not in text                                  # no run, no section


def test_a_run_with_other_parameters_than_its_profile_is_labelled_and_never_reported(tmp_path, isolated_results):
    same = make_run("baseline", [], device="cuda", progress=False)      # where/how it runs: still the profile
    assert same.label == "quick" and same.params["overrides"] == {}
    other = make_run("generators", [], pd.DataFrame({"arm": ["real"], "ratio": [1.0]}), max_steps=30)
    assert other.label == "quick+overrides" and other.params["overrides"] == {"max_steps": [QUICK["max_steps"], 30]}
    with pytest.raises(ValueError, match=r"quick\+overrides.*max_steps"):
        report.notebook_section("quick", "generators")
    # a label with no configs/ file is its own reference
    assert runs.run_label("my-experiment", {"max_steps": 30}) == ("my-experiment", {})


def test_every_profile_file_names_itself():
    for name in config.profiles():
        assert config.load_profile(name)["profile"] == name, f"configs/{name}.yaml must say `profile: {name}`"


def test_report_refuses_a_readme_without_markers(tmp_path, isolated_results):
    make_run("baseline", [{"n": 10, "seed": s, "test_accuracy": 0.5} for s in range(3)])
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    assert report.main(["--profile", "quick", "--readme", str(readme)]) == 1
    assert readme.read_text() == "no markers here\n"


def test_publish_copies_a_runs_figures_and_nothing_else(tmp_path, isolated_results):
    import matplotlib.pyplot as plt

    from synthstudy import plots
    run = make_run("baseline", [{"n": 10, "seed": s, "test_accuracy": 0.5} for s in range(3)])
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    plots.save(fig, "curve", run.dir)
    (run.dir / "figures" / "notes.txt").write_text("not a figure")
    copied = plots.publish(run.dir, tmp_path / "figures")
    assert sorted(p.name for p in copied) == ["curve.png", "curve.svg"]
    assert (tmp_path / "figures" / "curve.png").read_bytes() == (run.dir / "figures" / "curve.png").read_bytes()


def test_timing_section_shows_each_notebooks_latest_execution_and_what_it_computed(isolated_results):
    from synthstudy import reproduce
    assert report.timing_section("quick") is None                       # no log, no section
    run = make_run("baseline", [])
    cell = run.dir / "cells" / "a" / "record.json"
    cell.parent.mkdir(parents=True)
    cell.write_text("{}")
    assert reproduce.cell_counts("quick", "baseline", since=0.0) == (1, 1)
    assert reproduce.cell_counts("quick", "baseline", since=cell.stat().st_mtime + 1) == (0, 1)
    reproduce.log_timing("quick", "baseline", 600.0, 24, 24, before=0)  # a first run ...
    reproduce.log_timing("quick", "baseline", 300.0, 12, 36, before=24) # ... new cells added later: its cost adds
    reproduce.log_timing("quick", "baseline", 30.0, 0, 36)              # ... a rerun of the analysis: not its cost
    reproduce.log_timing("quick", "generators", 1200.0)                 # an old line without cell counts
    reproduce.log_timing("quick", "scaling", 900.0, 10, 10)
    reproduce.log_timing("quick", "scaling", 60.0, 0, 10)               # reran the analysis only: not its cost
    # a fresh run killed at a time limit on a GPU, resumed on the CPU: one run in two pieces
    reproduce.log_timing("quick", "audits", 120.0, 4, 4, before=0, gpu="NVIDIA H200", interrupted="SystemExit")
    reproduce.log_timing("quick", "audits", 60.0, 2, 6, before=4)
    # an old complete run, then a fresh one (its folder emptied) in two pieces: only the fresh one counts
    reproduce.log_timing("quick", "multiview", 600.0, 5, 5, before=0)
    reproduce.log_timing("quick", "multiview", 60.0, 2, 2, before=0, interrupted="KeyboardInterrupt")
    reproduce.log_timing("quick", "multiview", 120.0, 3, 5, before=2)
    # a fresh run killed inside its first cell (nothing recorded), then resumed: both pieces count
    reproduce.log_timing("quick", "report", 120.0, 0, 0, before=0, interrupted="SystemExit")
    reproduce.log_timing("quick", "report", 60.0, 1, 1, before=0)
    text = report.timing_section("quick")
    assert "together **59 min**" in text                                # 15 + 20 + 15 + 3 + 3 + 3
    assert "| report | 3 | 2 | 1 of 1 |" in text
    reproduce.log_timing("quick", "report", 30.0, 2, 2, before=0, interrupted="SystemExit")   # a new run, stopped
    assert "| report | 0.5 | 1 | 2 so far (stopped: SystemExit) |" in report.timing_section("quick")
    # a resumed piece whose change gave one cell a new key: that cell is computed twice, not a 7th of 6
    reproduce.log_timing("quick", "scaling", 60.0, 5, 6, before=0, interrupted="SystemExit")
    reproduce.log_timing("quick", "scaling", 60.0, 2, 6, before=5)
    recomputed = "| scaling | 2 | 2 | 6 of 6 (+1 recomputed after a change between pieces) |"
    assert recomputed in report.timing_section("quick")
    assert "| baseline | 15 | 2 | 36 of 36 |" in text and "| generators | 20 | 1 | not logged |" in text
    assert "| scaling | 15 | 1 | 10 of 10 |" in text and "| multiview | 3 | 2 | 5 of 5 |" in text
    audits = next(line for line in text.splitlines() if line.startswith("| audits"))
    assert "| audits | 3 | 2 | 6 of 6 | NVIDIA H200 + " in audits and "(2 threads)" not in audits.split("+")[0]
