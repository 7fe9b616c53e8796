"""The study's report, built from run records only: the README's results section and an HTML report.

    python -m synthstudy.report --profile quick      # README blocks only (the `report` notebook also does this)

`make reproduce` ends with the `report` notebook (notebooks/report.py), which calls this module: it copies every
run's figures into figures/ (`plots.publish`), shows each notebook's summary table and figures, rewrites the part
of README.md between the `<!-- results:start -->` and `<!-- results:end -->` markers, and is itself exported to
results/<profile>/report/report.html (`export_html`). Sources: results/<profile>/baseline/metrics.csv, every
other notebook's results/<profile>/<notebook>/summary.csv and figures/, and, when present,
results/bench/bench.json. Nothing here trains or samples.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import runs

START, END = "<!-- results:start -->", "<!-- results:end -->"
README = runs.PROJECT_ROOT / "README.md"


def machine_line(env: dict) -> str:
    cpu = env.get("cpu_model") or env.get("processor")
    device = env.get("cuda") or f"CPU ({cpu}, {env.get('torch_threads')} threads)"
    return (f"{device}, torch {env['versions'].get('torch')}, git {env['git']['sha'][:8]}"
            f"{' (dirty)' if env['git'].get('dirty') else ''}, {env.get('time', '')[:10]}")


def check_run_matches(profile: str, run_dir: Path) -> dict:
    """The run's params.json, refusing a run whose parameters differ from configs/<profile>.yaml's (its
    `run_label` says "<profile>+overrides"): a profile's section never shows another parameter set's numbers."""
    params = json.loads((run_dir / "params.json").read_text())
    label = params.get("run_label", profile)
    if label != profile:
        changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in params.get("overrides", {}).items())
        raise ValueError(f"{run_dir} holds a run labelled {label!r} ({changed}), not the {profile!r} profile: "
                         f"rerun it with `make reproduce PROFILE={profile}` (or move that folder away) before "
                         f"reporting {profile!r}")
    return params


def figure_link(profile: str, notebook: str, stem: str, run_figures: bool) -> str | None:
    """The README's link to one figure: the published copy in figures/ (the profile the report published), or with
    `run_figures` the run folder's own (the committed paper run); None where that file is absent."""
    path = (runs.results_root() / profile / notebook / "figures" if run_figures else runs.PROJECT_ROOT / "figures")
    if not (path / f"{stem}.png").is_file():
        return None
    shown = (f"results/{profile}/{notebook}/figures" if run_figures else "figures")
    return f"![{stem}]({shown}/{stem}.png)"


def baseline_section(profile: str, run_figures: bool = False) -> str:
    run_dir = runs.results_root() / profile / "baseline"
    params = check_run_matches(profile, run_dir)
    env = json.loads((run_dir / "environment.json").read_text())
    import pandas as pd
    lines = [f"### Real-data baseline: accuracy vs N (`{profile}` profile)", "",
             f"Made by `make reproduce PROFILE={profile}` (notebook `baseline`): model `{params['model']}`, "
             f"{params['epochs']:g} epochs over the N images per cell, clipped to [{params['min_steps']:,}, "
             f"{params['max_steps']:,}] steps × {params['batch_size']} images, augmentation `{params['augment']}`, "
             f"test-time views `{params['tta']}`, {len(params['seeds'])} seeds (each seed draws its own stratified "
             f"subset). Machine: {machine_line(env)}.", "",
             markdown_table(pd.read_csv(run_dir / "summary.csv"))]
    checks = run_dir / "budget_check.csv"
    if checks.is_file():
        lines += ["", "Budget check (the same cells at twice the budget, scored on validation):", ""]
        lines += [f"- {v}" for v in pd.read_csv(checks)["verdict"]]
    link = figure_link(profile, "baseline", "baseline_accuracy_vs_n", run_figures)
    lines += ["", link] if link else []
    return "\n".join(lines)


def markdown_table(frame) -> str:
    """A DataFrame as a GitHub markdown table (floats to 3 significant decimals, NaN as an empty cell)."""
    import math

    def cell(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


# What each notebook's summary table shows, for the README (the notebooks hold the full story).
TITLES = {
    "generators": "Generators: CAS (train on generated, test on real) and distribution scores",
    "scaling": "Real vs synthetic data across N",
    "multiview": "Contrastive learning from generated views: linear-probe accuracy",
    "audits": "Audits: copying and bias amplification",
}


# The figures the README shows per notebook (the rest are in figures/, the HTML report and the notebooks).
HEADLINE_FIGURES = {
    "generators": ["generators_samples", "generators_cas_fid"],
    "scaling": ["scaling_accuracy_vs_n", "scaling_effective_data"],
    "multiview": ["multiview_methods", "multiview_sigma_sweep"],
    "audits": ["audits_privacy_vs_n", "audits_bias_gap"],
}


def notebook_section(profile: str, notebook: str, run_figures: bool = False) -> str | None:
    """The notebook's summary.csv and its headline figures (published, or the run folder's: `figure_link`), if that
    run exists."""
    run_dir = runs.results_root() / profile / notebook
    summary = run_dir / "summary.csv"
    if not summary.is_file():
        return None
    import pandas as pd
    check_run_matches(profile, run_dir)
    env = json.loads((run_dir / "environment.json").read_text())
    lines = [f"### {TITLES.get(notebook, notebook)} (`{profile}` profile)", "",
             f"Made by `make reproduce PROFILE={profile}` (notebook `{notebook}`; parameters in "
             f"`results/{profile}/{notebook}/params.json`). Machine: {machine_line(env)}.", "",
             markdown_table(pd.read_csv(summary))]
    shown = HEADLINE_FIGURES.get(notebook) or sorted(p.stem for p in (run_dir / "figures").glob("*.png"))
    for stem in shown:
        link = figure_link(profile, notebook, stem, run_figures)
        if (run_dir / "figures" / f"{stem}.png").is_file() and link:
            lines += ["", link]
    others = sorted(p.stem for p in (run_dir / "figures").glob("*.png") if p.stem not in shown)
    if others:
        lines += ["", "More figures in `figures/` and the HTML report: " + ", ".join(f"`{o}`" for o in others) + "."]
    return "\n".join(lines)


def section(profile: str, notebook: str, run_figures: bool = False) -> str | None:
    """One notebook's README section: the baseline's (its curve and budget checks) or any other's summary."""
    return (baseline_section(profile, run_figures) if notebook == "baseline"
            else notebook_section(profile, notebook, run_figures))


def bench_section() -> str | None:
    path = runs.results_root() / "bench" / "bench.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    from .bench import describe_ceiling, render, render_budgets, render_generators
    lines = []
    if record.get("budget_rows"):
        first = record["budget_rows"][0]
        lines += ["### `make bench`: accuracy per training budget in images (the same on every machine)", "",
                  (f"Made by `make bench` ({machine_line(record['budget_environment'])}); `{first['model']}` on "
                   f"`{first['dataset']}`, trained on {first['train_images']:,} training images "
                   f"({first['val_images']:,} held out for validation), each budget its own run with the one-cycle "
                   "schedule spanning it, scored on validation and on the test split; 95% CI over seeds. Speed does "
                   "not enter these numbers: a machine that trains at R images/s reaches, in T seconds, the row of "
                   "the budget R × T."), "",
                  render_budgets(record["budget_rows"])]
    wall_clock = render(record.get("rows", []))
    if wall_clock:
        lines += ["", "### `make bench`: wall-clock budgets on the machine that ran it", "",
                  (f"Made by `make bench` ({machine_line(record['environment'])}); the same recipe and splits, "
                   "training stopped when the time is spent. Throughput is a share of a ceiling that it cannot "
                   "exceed: the largest of the CPU description's peak, every GEMM and convolution probe and the "
                   "training rates themselves."), "", wall_clock]
        if record.get("ceiling"):
            lines += ["", f"Ceiling: {describe_ceiling(record['ceiling'])}."]
    if record.get("generator_rows"):
        lines += ["", "### `make bench`: generators", "",
                  (f"Made by `python -m synthstudy.bench --generators` (`make bench`; "
                   f"{machine_line(record['generator_environment'])}): each generator trained on the whole pool "
                   "with its profile's step budget (the fit time is the one recorded when it was trained), sampling "
                   "timed now."), "", render_generators(record["generator_rows"])]
    return "\n".join(lines).strip() or None


def timing_pieces(profile: str) -> dict[str, list[dict]]:
    """Per notebook, the executions (lines of results/<profile>/reproduce.jsonl, written by `make reproduce`) that
    make up its latest run: a fresh run (no cell there before it) or a complete one (it computed every cell) starts a
    new run; an execution that computed some cells (a resumed piece, after an interruption or on another machine)
    adds to it; one that computed none (a rerun of the analysis) counts only where nothing else is logged."""
    path = runs.results_root() / profile / "reproduce.jsonl"
    pieces: dict[str, list[dict]] = {}
    if not path.is_file():
        return pieces
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        done, total = entry.get("cells_computed", 1), entry.get("cells_total")
        runs_of = pieces.setdefault(entry["notebook"], [])
        after_stop = bool(runs_of) and bool(runs_of[-1].get("interrupted"))   # resumes that piece, whatever it did
        if not after_stop and (entry.get("cells_before") == 0 or (done == total and not entry.get("interrupted"))):
            runs_of[:] = [entry]                     # a fresh run: nothing was there before it
        elif done > 0 or after_stop or entry.get("interrupted"):
            runs_of[:] = [e for e in runs_of if e.get("cells_computed", 1) > 0 or e.get("interrupted")] + [entry]
        elif not runs_of:
            runs_of.append(entry)
    return pieces


def machine_of(entry: dict) -> str:
    """The machine of one timing line: the GPU where one did the work, else the CPU and its threads."""
    return entry.get("gpu") or f"{entry['cpu_model']} ({entry['threads']} threads)"


MIXED_MACHINES = " of wall time added over the machines named (not one machine's time)"


def timing_section(profile: str) -> str | None:
    """How long each notebook's latest run took, from results/<profile>/reproduce.jsonl: the sum of its pieces
    (`timing_pieces`), how many cells they computed (the rest were reused) and on which machines. Only a run that
    computed all its cells in pieces on one machine is a first-run time for that machine. A line's `note` (what the
    log alone cannot say, e.g. that the machine was shared) is listed under the table."""
    pieces = timing_pieces(profile)
    order = [nb for nb in (*runs.STUDY_NOTEBOOKS, "report") if pieces.get(nb)]
    if not order:
        return None
    import pandas as pd

    def cells(parts):
        last = parts[-1]
        if "cells_total" not in last:
            return "not logged"
        done = sum(p.get("cells_computed", 0) for p in parts)
        if last.get("interrupted"):                 # stopped before its end: the total is not known yet
            return f"{done:,} so far (stopped: {last['interrupted']})"
        total = last["cells_total"]
        if done > total:    # a change between pieces (code, parameters) gave some cells new keys: computed twice
            return f"{total:,} of {total:,} (+{done - total:,} recomputed after a change between pieces)"
        return f"{done:,} of {total:,}"
    rows = []
    for nb in order:
        parts = pieces[nb]
        machines = list(dict.fromkeys(machine_of(p) for p in parts))
        rows.append({"notebook": nb, "minutes": round(sum(p["seconds"] for p in parts) / 60, 1),
                     "pieces": len(parts), "cells computed": cells(parts), "machine": " + ".join(machines),
                     "git": " ".join(dict.fromkeys(p["git"] for p in parts)),
                     "finished": parts[-1]["finished"][:16].replace("T", " ")})
    total = sum(r["minutes"] for r in rows)
    mixed = len({m for r in rows for m in r["machine"].split(" + ")}) > 1
    return "\n".join([f"### Wall time of `make reproduce PROFILE={profile}`", "",
                      (f"Each notebook's latest run, from `results/{profile}/reproduce.jsonl`; together "
                       f"**{total:.0f} min**{MIXED_MACHINES if mixed else ''}. A run stopped and resumed is the sum "
                       "of its pieces (\"pieces\"), "
                       "each on the machine named; a notebook that reused cells from an earlier run (\"cells "
                       "computed\" below its total) took less than a first run would; generators trained into "
                       "`results/cache/` by an earlier notebook are reused without being counted here."), "",
                      markdown_table(pd.DataFrame(rows)),
                      *[f"\n- `{nb}`: {p['note']}" for nb in order for p in pieces[nb] if p.get("note")]])


def study_runs(profile: str) -> dict[str, Path]:
    """The study notebooks that have a finished run folder for `profile` (in the study's order)."""
    STUDY = runs.STUDY_NOTEBOOKS
    root = runs.results_root() / profile
    return {nb: root / nb for nb in STUDY if (root / nb / "params.json").is_file()}


def sections(profile: str) -> list[str]:
    """The README's results section as markdown parts: the baseline, every other notebook, the benchmark."""
    found = study_runs(profile)
    parts = [section(profile, nb) for nb in found]
    return [p for p in (timing_section(profile), *parts, bench_section()) if p]


def replace_block(text: str, start: str, end: str, body: str, readme: Path) -> str:
    """`text` with what lies between the `start` and `end` markers replaced by `body`; refuses a file without them."""
    if start not in text or end not in text:
        raise ValueError(f"{readme} has no {start} ... {end} markers: the generated section has nowhere to go")
    head, rest = text.split(start, 1)
    return head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def update_readme(profile: str, readme: Path = README) -> list[str]:
    """Rewrite README.md's generated blocks from the records: the headline from the committed paper run
    (synthstudy.headline) and the results section from `profile`'s runs. The results section is left as it is for
    the paper profile (the headline shows it) and where `profile` has no run here (a fresh clone keeps the quick
    tables it was committed with). Returns the blocks rewritten."""
    from . import headline
    readme = Path(readme)
    text, done = readme.read_text(), []
    blocks = [(START, END)] + ([(headline.START, headline.END)] if headline.started() else [])
    for start, end in blocks:                                   # refuse before computing anything
        replace_block(text, start, end, "", readme)
    top = headline.section()
    if top is not None:
        text, done = replace_block(text, headline.START, headline.END, top, readme), ["headline (paper)"]
    if profile != headline.PROFILE and study_runs(profile):
        text = replace_block(text, START, END, "\n\n".join(sections(profile)), readme)
        done.append(f"results ({profile})")
    runs.write_text(readme, text)
    return done


def export_html(executed_notebook: Path, html_path: Path) -> Path:
    """The executed report notebook as one self-contained HTML file (code hidden: tables, text and figures)."""
    import nbformat
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed_notebook), as_version=4))
    runs.write_text(Path(html_path), body)
    return Path(html_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--readme", default=str(README), help="file whose results section is rewritten")
    args = parser.parse_args(argv)
    try:
        done = update_readme(args.profile, Path(args.readme))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{Path(args.readme).name}: regenerated {', '.join(done) or 'nothing (no runs found)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
