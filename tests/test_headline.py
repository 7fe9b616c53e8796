"""The README's headline is generated from the committed paper records: exact, traceable, and honest when pending."""
import pandas as pd
import pytest

from synthstudy import config, headline, report, runs

PAPER = config.load_profile("paper")


def paper_run(notebook, summary=None, findings=None, **overrides):
    run = runs.Run(notebook, "paper", {**PAPER, **overrides}, device="cpu")
    run.write_table([])
    if summary is not None:
        runs.write_text(run.dir / "summary.csv", summary.to_csv(index=False))
    if findings is not None:
        run.write_findings(findings)
    return run


def test_the_committed_paper_records_regenerate_the_readme_headline_exactly(monkeypatch):
    monkeypatch.setenv("SYNTHSTUDY_RESULTS", str(runs.PROJECT_ROOT / "results"))
    readme = (runs.PROJECT_ROOT / "README.md").read_text()
    block = readme.split(headline.START, 1)[1].split(headline.END, 1)[0]
    assert block == "\n" + headline.section() + "\n", "README headline is stale: run `python -m synthstudy.report`"


def test_claims_read_the_verdicts_and_say_where_each_comes_from(isolated_results):
    assert headline.section() is None                                   # no paper run: no headline
    paper_run("baseline", pd.DataFrame({"n": [100, 55000], "steps": [500, 6000], "seeds": [5, 5],
                                        "test accuracy (%)": ["70.00 ± 2.00", "93.70 ± 0.10"]}))
    paper_run("generators", pd.DataFrame({
        "arm": ["real", "flow", "cgan"], "test accuracy (%)": ["93.70 ± 0.10", "92.10 ± 0.50", "80.00 ± 1.00"],
        "ratio": [1.0, 0.983, 0.854],
        "vs real (paired)": ["—", "-1.60 [-2.10, -1.10] pts, equivalent (p_Holm 0.01)",
                             "-13.70 [-14.70, -12.70] pts, lower (p_Holm 0.001)"]}))
    paper_run("multiview", pd.DataFrame({"arm": ["untrained encoder"]}), findings=[
        "- **σ sweep:** σ* = 0.7 (best mean on validation); interior optimum supported: σ* = 0.7 beats both ends",
        "- **generated views vs real SimCLR** (pca · SimCLR · latent σ=0.7): -1.20 [-2.00, -0.40] pts, lower "
        "(p_Holm 0.01).",
        "- **Unique anchors:** pool M=1,000: -2.0 [-3.0, -1.0] pts, lower (p_Holm 0.01); pool M=10,000: "
        "-0.1 [-0.5, +0.3] pts, equivalent (p_Holm 0.02)."])
    rows = {r["question"]: r for r in headline.claims()}
    assert rows["How high does real data go?"]["this study (paper)"].startswith("real data, N = 55,000: 93.70")
    assert rows["How high does real data go?"]["agrees?"] == "above VGG16 / Capsule Network, below WRN-28-10"
    cas = rows["Is training on generated images alone below real? (CAS)"]
    assert cas["agrees?"] == "partly: 1 of 2 families below real"
    assert "flow (64,000 steps, guidance 1: zoo_overrides) 92.10" in cas["this study (paper)"]   # how it was trained
    assert "order of validation CAS" not in cas["this study (paper)"]     # no cells recorded: the table's order
    assert rows["Can generated data come within ~2 points of real?"]["agrees?"] == "yes: within GaFi's 2.03 points"
    assert rows["Is there an interior optimum σ for latent views?"]["agrees?"] == "yes"
    assert rows["Are generated views close to but below real views?"]["agrees?"] == "yes: below real"
    assert rows["Do more unique generated samples help?"]["agrees?"] == ("yes: a fixed pool is below the online "
                                                                         "stream (M=1,000: lower, M=10,000: "
                                                                         "equivalent)")
    for pending in ("Across N: can generated data stand in for, or add to, N real images?",
                    "Does a generator copy its training images?"):
        assert rows[pending]["agrees?"] == "pending" and rows[pending]["source"] == "—"
    text = headline.section()
    assert "still to run: `scaling`, `audits`" in text and "Pending until the paper run reaches them" in text
    assert "results/paper/baseline/figures" not in text                 # no figure there, no dead link


def test_a_flat_sigma_curve_and_a_notebook_without_findings_are_not_read_as_support(isolated_results):
    paper_run("multiview", pd.DataFrame({"arm": ["untrained encoder"]}), findings=[
        "- **σ sweep:** σ* = 3 (best mean on validation); interior optimum not supported: σ* = 3 is the upper end"])
    assert headline.sigma_row()["agrees?"] == "no"
    assert headline.close_below_row()["agrees?"] == "pending"          # no such line: says how to get it
    paper_run("scaling", pd.DataFrame({"N": [100, 100], "arm": ["real", "flow stream"],
                                       "vs real (paired)": ["—", "+0.40 [-0.90, +1.70] pts, inconclusive (p_Holm 1)"]}))
    assert headline.scaling_row()["agrees?"] == "partly: 0 of 1 streams below real"


def test_the_readme_keeps_quick_tables_a_clone_has_not_run_and_refuses_missing_markers(tmp_path, isolated_results):
    paper_run("baseline", pd.DataFrame({"n": [55000], "steps": [6000], "seeds": [5],
                                        "test accuracy (%)": ["93.70 ± 0.10"]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{headline.START}\nSTALE-HEADLINE\n{headline.END}\n"
                      f"b\n{report.START}\nquick tables\n{report.END}\n")
    assert report.update_readme("quick", readme) == ["headline (paper)"]     # no quick run here: kept
    text = readme.read_text()
    assert "quick tables" in text and "STALE-HEADLINE" not in text and "93.70 ± 0.10" in text
    readme.write_text(f"{report.START}\n{report.END}\n")
    with pytest.raises(ValueError, match="headline:start"):
        report.update_readme("quick", readme)


def test_mean_ci_and_verdict_parse_the_summary_formats():
    assert headline.mean_ci("82.98 ± 1.56") == (82.98, 1.56)
    mean, half = headline.mean_ci("82.98")                               # one seed: no CI
    assert mean == 82.98 and half != half
    assert headline.verdict_of("-10.57 [-12.12, -9.02] pts, lower (p_Holm 4.6e-05)") == "lower"
    assert headline.verdict_of("—") is None


def copy_rows(generator, findings):
    return [{"audit": "privacy", "generator": generator, "setting": setting,
             "measure": "copy excess P(d_train<τ) − P(d_heldout<τ)", "value": "…", "finding": finding}
            for setting, finding in findings]


def test_copying_is_read_only_where_the_planted_memoriser_is_caught(isolated_results):
    caught = [("N=100", "feature: copies: more samples within τ …; pixel: copies: …"),
              ("N=1,000", "feature: copies: …; pixel: copies: …")]
    flow = [("N=100", "feature: the seeds cannot tell; pixel: copies: more samples within τ …"),
            ("N=1,000", "feature: the seeds cannot tell; pixel: the seeds cannot tell")]
    paper_run("audits", pd.DataFrame(copy_rows("memoriser", caught) + copy_rows("flow", flow)))
    assert headline.copying_row()["agrees?"] == "yes: copies at flow at N=100"
    clean = [(s, "feature: no copy excess beyond the margin; pixel: the seeds cannot tell") for s, _ in flow]
    paper_run("audits", pd.DataFrame(copy_rows("memoriser", caught) + copy_rows("flow", clean)))
    assert headline.copying_row()["agrees?"].startswith("no copy excess found")
    missed = [caught[0], ("N=1,000", "feature: the seeds cannot tell; pixel: the seeds cannot tell")]
    paper_run("audits", pd.DataFrame(copy_rows("memoriser", missed) + copy_rows("flow", clean)))
    assert headline.copying_row()["agrees?"].startswith("cannot tell: the planted memoriser")


def test_a_run_with_overrides_in_the_paper_folder_is_not_read_as_the_paper_run(isolated_results):
    paper_run("multiview", pd.DataFrame({"arm": ["untrained encoder"]}), findings=[
        "- **σ sweep:** σ* = 0.7 (best mean on validation); interior optimum supported: …"], generator="flow")
    assert not headline.finished("multiview") and headline.run_label("multiview") == "paper+overrides"
    row = headline.sigma_row()
    assert row["agrees?"] == "pending" and "paper+overrides" in row["this study (paper)"]
    assert headline.section() is None                                   # nothing of the paper profile itself


def test_the_cas_row_adds_the_budget_curve_beyond_the_paper_stop_only_where_it_was_scored(isolated_results):
    # the cVAE as the closest family: paper trains it at gen_steps (no zoo_overrides), so its curve can add to it
    assert "cvae" not in PAPER["zoo_overrides"]
    run = paper_run("generators", pd.DataFrame({
        "arm": ["real", "cvae"], "test accuracy (%)": ["93.50 ± 0.10", "83.00 ± 1.50"], "ratio": [1.0, 0.888],
        "vs real (paired)": ["—", "-10.50 [-12.00, -9.00] pts, lower (p_Holm 0.001)"]}))
    runs.write_text(run.dir / "metrics.csv", pd.DataFrame({
        "arm": ["real", "real", "pool", "pool"], "generator": ["none", "none", "cvae", "cvae"],
        "val_accuracy": [0.94, 0.94, 0.82, 0.84], "test_accuracy": [0.935, 0.936, 0.829, 0.831]}).to_csv(index=False))
    assert "longer" not in headline.cas_rows()[1]["this study (paper)"]          # no curves: nothing added
    stop = PAPER["gen_steps"]["cvae"]
    curves = runs.results_root() / "paper" / "generator_curves"
    runs.write_text(curves / "curves.csv", pd.DataFrame({
        "generator": "cvae", "family": "cvae", "gen_steps": [stop // 2, stop, 4 * stop], "gen_seed": 0,
        "fid": [5.0, 3.0, 1.6], "recall": [0.3, 0.4, 0.5], "cas_val": [0.80, 0.83, None]}).to_csv(index=False))
    assert "longer" not in headline.cas_rows()[1]["this study (paper)"]          # CAS only up to the stop
    runs.write_text(curves / "curves.csv", pd.DataFrame({
        "generator": "cvae", "family": "cvae", "gen_steps": [stop, 4 * stop], "gen_seed": 0, "fid": [3.0, 1.6],
        "recall": [0.4, 0.5], "cas_val": [0.83, 0.893]}).to_csv(index=False))
    text = headline.cas_rows()[1]["this study (paper)"]
    assert f"trained 4× longer ({4 * stop:,} steps" in text and "reaches 89.3%, 0.950 of real's 94.00%" in text
    # 0.83 against 0.95 x 0.9355 = 0.889: below, by Welch on test
    assert text.startswith("closest family: cvae, ratio 0.888; below 0.95× real (Welch on test, unpaired: ")


def test_the_cas_row_names_a_family_the_run_trained_otherwise_and_judges_it_against_095_of_real(isolated_results):
    assert PAPER["zoo_overrides"]["flow"] == {"steps": 64000, "guidance": 1.0}
    run = paper_run("generators", pd.DataFrame({
        "arm": ["real", "flow"], "test accuracy (%)": ["93.55 ± 0.05", "89.10 ± 0.10"], "ratio": [1.0, 0.952],
        "vs real (paired)": ["—", "-4.45 [-4.60, -4.30] pts, lower (p_Holm 0.001)"]}))
    runs.write_text(run.dir / "metrics.csv", pd.DataFrame({
        "arm": ["real"] * 3 + ["pool"] * 3, "generator": ["none"] * 3 + ["flow"] * 3,
        "val_accuracy": [0.94] * 6, "test_accuracy": [0.935, 0.9355, 0.936, 0.890, 0.891, 0.892]}).to_csv(index=False))
    curves = runs.results_root() / "paper" / "generator_curves"
    runs.write_text(curves / "curves.csv", pd.DataFrame({
        "generator": "flow", "family": "flow", "gen_steps": [4000, 32000], "gen_seed": 0, "fid": [3.0, 1.4],
        "recall": [0.4, 0.5], "cas_val": [0.83, 0.88]}).to_csv(index=False))
    text = headline.cas_rows()[1]["this study (paper)"]
    # the row is the longer fit: its settings named, no curve added; 0.891 against 0.95 x 0.9355 = 0.8887
    assert text.startswith("closest family: flow (64,000 steps, guidance 1: zoo_overrides), ratio 0.952; at least "
                           "0.95× real (Welch on test, unpaired: +0.23 [") and "longer" not in text
    assert "4.5 points below real" in text


def test_the_closest_family_is_chosen_on_validation_not_on_the_test_ratio(isolated_results):
    run = paper_run("generators", pd.DataFrame({
        "arm": ["real", "flow", "cgan"], "test accuracy (%)": ["93.50 ± 0.10", "85.00 ± 0.50", "86.00 ± 0.50"],
        "ratio": [1.0, 0.909, 0.920],
        "vs real (paired)": ["—", "-8.50 [-9.00, -8.00] pts, lower (p_Holm 0.001)",
                             "-7.50 [-8.00, -7.00] pts, lower (p_Holm 0.001)"]}))
    runs.write_text(run.dir / "metrics.csv", pd.DataFrame({
        "arm": ["real", "pool", "pool"], "generator": ["none", "flow", "cgan"], "val_accuracy": [0.94, 0.88, 0.86],
        "test_accuracy": [0.935, 0.85, 0.86]}).to_csv(index=False))
    assert headline.cas_rows()[1]["this study (paper)"].startswith("closest family: flow")   # best on validation
    listed = headline.cas_rows()[0]["this study (paper)"]
    assert "only (in order of validation CAS): flow (64,000 steps, guidance 1: zoo_overrides) 85.00" in listed
