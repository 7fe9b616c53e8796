# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Report: the whole study, from its run records
#
# This notebook trains nothing. It reads what the study notebooks recorded under `results/<profile>/` (each
# notebook's parameters, machine, summary table and figures), shows it in one place, copies every figure into the
# repo's `figures/` (PNG and SVG) and regenerates the README's results section, so no number in the README is
# typed by hand. `make reproduce` runs it last and exports it to `results/<profile>/report/report.html`.
#
# A section appears only for notebooks that have run on this profile; rerun one notebook, then this one, to
# refresh the report.

# %% tags=["parameters"]
profile: str = "quick"            # which results/<profile>/ records to report on (a configs/ name)
publish_figures: bool = True      # copy every run's figures into the repo's figures/ (the README shows them)
update_readme: bool = True        # rewrite README.md's headline (paper run) and results section from the records

# %%
from IPython.display import Image, Markdown, display

from synthstudy import config, headline, plots, report

P = config.from_namespace(config.ReportParams, globals())
found = report.study_runs(P.profile)
if not found:
    raise FileNotFoundError(f"no run records under results/{P.profile}/: run `make reproduce PROFILE={P.profile}` "
                            f"(or one notebook) first")
display(Markdown(f"Runs found for profile `{P.profile}`: " + ", ".join(f"`{nb}`" for nb in found)))

# %% [markdown]
# ## Results, notebook by notebook
# Each section: the command and machine that made it, the notebook's summary table (means ± 95% CI over seeds
# where the notebook has seeds) and its figures. The full story, with the reasoning, is in each notebook.

# %%
for notebook, run_dir in found.items():
    section = report.section(P.profile, notebook) or f"### {notebook}"
    # figures are shown from the run folder: the README's figures/ links are only valid once published
    display(Markdown("\n".join(line for line in section.splitlines() if not line.startswith("!["))))
    for png in sorted((run_dir / "figures").glob("*.png")):
        display(Markdown(f"**{png.stem}**"), Image(filename=str(png)))

# %% [markdown]
# ## The headline, and the other profile
# The README's headline comes from the committed `paper` run (`synthstudy/headline.py`): each finding read from a
# notebook's summary table or generated findings and set against a published anchor. Below it, the sections of the
# other profile (`paper` beside `quick`, or `quick` beside `paper`) where its records exist, so one page shows both.

# %%
if headline.started():
    display(Markdown("\n".join(line for line in headline.section().splitlines() if not line.startswith("!["))))
for other in [name for name in ("paper", "quick") if name != P.profile and report.study_runs(name)]:
    display(Markdown(f"## The `{other}` profile"))
    for notebook, run_dir in report.study_runs(other).items():
        section = report.section(other, notebook) or f"### {notebook}"
        display(Markdown("\n".join(line for line in section.splitlines() if not line.startswith("!["))))
        for stem in report.HEADLINE_FIGURES.get(notebook, ["baseline_accuracy_vs_n"]):
            if (run_dir / "figures" / f"{stem}.png").is_file():
                display(Markdown(f"**{stem}** ({other})"), Image(filename=str(run_dir / "figures" / f"{stem}.png")))

# %% [markdown]
# ## Publishing: figures/ and the README
# Only this notebook writes to the repo: figures/ gets exactly the figures the records hold, and the README's
# results section (between its markers) is regenerated from the same records.

# %%
if P.publish_figures:
    copied = [path for run_dir in found.values() for path in plots.publish(run_dir)]
    print(f"{len(copied)} figure files copied into {plots.FIGURES_DIR}")
if P.update_readme:
    done = report.update_readme(P.profile)
    print(f"{report.README}: regenerated {', '.join(done) or 'nothing'} from the records")
