"""Execute the study's notebooks with papermill on one profile: what `make reproduce` runs.

    python -m synthstudy.reproduce --profile quick              # every notebook, in order
    python -m synthstudy.reproduce --profile smoke --notebooks baseline
    python -m synthstudy.reproduce --profile quick -p steps 500 # override one parameter for this call
    python -m synthstudy.reproduce --profile paper --executor slurm   # grid cells as Slurm jobs (submitit)

The jupytext `.py` sources in notebooks/ are the truth: each is converted in memory, given the parameters of
`configs/<profile>.yaml` that it declares (plus any `-p` overrides), executed with papermill, and saved to
`results/<profile>/<notebook>/<notebook>.ipynb`; the last, `report`, also becomes
results/<profile>/report/report.html. Notebooks record their cells as they go, so rerunning after an interruption
skips what finished. Bad profile or notebook names, and bad parameter values for any selected notebook, are
refused before anything runs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import yaml

from . import config, runs
from .runs import EXECUTORS, PROJECT_ROOT, atomic_path, git_state, results_root

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
# Execution order: later notebooks read what earlier ones cached (the baseline first); the report reads them all.
STUDY = list(runs.STUDY_NOTEBOOKS)
NOTEBOOKS = STUDY + ["report"]
# The parameter schema each notebook validates itself with (synthstudy.config); `main` applies it up front too.
SCHEMAS = {"baseline": "BaselineParams", "generators": "GeneratorsParams", "scaling": "ScalingParams",
           "multiview": "MultiviewParams", "audits": "AuditsParams", "report": "ReportParams"}


def notebook_parameters(notebook) -> dict:
    import papermill
    return papermill.inspect_notebook(notebook)


def notebook_params(name: str, profile: str, overrides: dict):
    """(declared parameter names, validated parameters) of one notebook on a profile: its parameters cell's
    defaults < the profile < overrides, as the executed notebook will see them (synthstudy.estimate counts its work
    from them)."""
    import ast
    profile_values = {**config.load_profile(profile), **overrides, "profile": profile}
    declared = notebook_parameters(str(NOTEBOOK_DIR / f"{name}.ipynb"))
    values = {k: ast.literal_eval(spec["default"]) for k, spec in declared.items()}
    values.update({k: v for k, v in profile_values.items() if k in declared})
    try:
        return set(declared), config.from_namespace(getattr(config, SCHEMAS[name]), values)
    except config.ParameterError as err:
        raise config.ParameterError(f"notebook {name}: {err}") from None


def check_parameters(names, profile: str, overrides: dict) -> dict[str, set]:
    """Validate every selected notebook's parameters (cell defaults < profile < overrides) before any notebook
    runs, so a bad value for the last notebook is reported now, not after the first ones have run for an hour.
    Returns the parameter names each notebook declares."""
    return {name: notebook_params(name, profile, overrides)[0] for name in names}


def cell_counts(profile: str, name: str, since: float) -> tuple[int, int]:
    """(cells this execution computed, cells the notebook's run folder holds): a record written after `since` (a
    time.time()) was computed now; the others were reused from an earlier execution."""
    records = list((results_root() / profile / name / "cells").glob("*/record.json"))
    return sum(r.stat().st_mtime >= since for r in records), len(records)


def accelerator(device: str) -> str | None:
    """The GPU's name when the notebooks' `device` parameter resolves to CUDA here, else None (CPU runs): a timing
    line names the chip that did the work, not only the host CPU."""
    import torch

    from .train import resolve_device
    try:
        resolved = resolve_device(device)
    except ValueError:                   # the notebook refuses such a device itself, before any compute
        return None
    return torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else None


def log_timing(profile: str, name: str, seconds: float, computed: int | None = None,
               total: int | None = None, gpu: str | None = None, interrupted: str | None = None,
               before: int | None = None, git: str | None = None) -> None:
    """Append one line per executed notebook to results/<profile>/reproduce.jsonl: how long it took, how many of
    its cells it computed (the rest were reused), on which CPU, at which commit. The README's timing table is
    generated from this log (`report.timing_section`): a first run with an empty cache computes every cell and
    trains every generator; a rerun skips finished cells, so both kinds of line are kept, in order. An execution
    stopped before its end (a kill, a time limit, a failing cell) is logged too, with `interrupted` naming why: its
    finished cells are kept and the next execution resumes from them, so a run's cost is the sum of its pieces."""
    import json

    from .runs import cpu_model
    from .train import cpu_threads
    line = {"notebook": name, "profile": profile, "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_model": cpu_model(),
            "threads": cpu_threads(), "git": (git or git_state().get("sha", ""))[:8]}
    if computed is not None:
        line.update(cells_computed=computed, cells_total=total)
    if before is not None:
        line["cells_before"] = before     # 0: a fresh run (report.timing_pieces starts a new run there)
    if gpu:
        line["gpu"] = gpu
    if interrupted:
        line["interrupted"] = interrupted
    path = results_root() / profile / "reproduce.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:          # appends of one short line: no partial record survives a crash
        log.write(json.dumps(line) + "\n")


def execute(name: str, profile: str, overrides: dict | None = None, kernel: str = "python3",
            progress: bool = True) -> Path:
    """Run one notebook on a profile; returns the path of the executed copy."""
    import jupytext
    import papermill
    source = NOTEBOOK_DIR / f"{name}.py"
    nb = jupytext.read(source)
    out_dir = results_root() / profile / name
    out_dir.mkdir(parents=True, exist_ok=True)
    input_path = out_dir / f"{name}.input.ipynb"
    with atomic_path(input_path) as tmp:
        tmp.write_text(jupytext.writes(nb, fmt="ipynb"))
    declared = notebook_parameters(str(input_path))
    values = {**config.load_profile(profile), **(overrides or {}), "profile": profile}
    params = {k: v for k, v in values.items() if k in declared}
    output = out_dir / f"{name}.ipynb"
    gpu = accelerator(str(values.get("device", "auto")))
    before = cell_counts(profile, name, time.time())[1]
    git = git_state().get("sha", "")            # the commit this run started from (read once per process)
    start, started_at = time.perf_counter(), time.time()
    try:
        # log_output streams what the notebook prints (one summary line per finished grid cell) to this terminal
        papermill.execute_notebook(str(input_path), str(output), parameters=params, kernel_name=kernel,
                                   cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=progress)
    except BaseException as stop:        # Ctrl-C, SIGTERM (see main), a failing cell: log the piece, then stop
        log_timing(profile, name, time.perf_counter() - start, *cell_counts(profile, name, started_at), gpu=gpu,
                   interrupted=type(stop).__name__, before=before, git=git)
        raise
    input_path.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    log_timing(profile, name, seconds, *cell_counts(profile, name, started_at), gpu=gpu, before=before, git=git)
    print(f"[reproduce] {name} on {profile}: {seconds:.0f} s -> {output}", flush=True)
    if name == "report":
        from .report import export_html
        print(f"[reproduce] HTML report -> {export_html(output, out_dir / 'report.html')}", flush=True)
    return output


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", help=f"one of {', '.join(config.profiles())} (default: quick)")
    parser.add_argument("--notebooks", nargs="*", default=None,
                        help=f"subset to run, in the study's order (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a parameter; VALUE is read as YAML (e.g. -p seeds '[0,1,2]')")
    parser.add_argument("--no-progress", action="store_true", help="do not stream the notebooks' output here")
    parser.add_argument("--estimate", action="store_true",
                        help="print the estimated time (work counted from the parameters, unit costs measured on "
                             "this machine: synthstudy.estimate) and exit without running anything")
    parser.add_argument("--executor", default=os.environ.get("SYNTHSTUDY_EXECUTOR") or "inline",
                        help="where grid cells run: inline (this process, default), local (submitit subprocesses, "
                             "$SYNTHSTUDY_PARALLEL at a time) or slurm (submitit jobs; see README 'On a cluster')")
    args = parser.parse_args(argv)
    try:
        config.load_profile(args.profile)                     # refuses unknown profiles before any work
        if args.executor not in EXECUTORS:
            raise config.ParameterError(f"executor={args.executor!r} is unknown; allowed values: "
                                        f"{', '.join(EXECUTORS)}")
        # the notebooks' kernels inherit the environment: runs.Run.grid reads the executor from it, and
        # synthstudy.progress draws text bars (a widget is invisible in the terminal that papermill streams to)
        os.environ["SYNTHSTUDY_EXECUTOR"] = args.executor
        os.environ["SYNTHSTUDY_TEXT_PROGRESS"] = "1"
        names = args.notebooks if args.notebooks else NOTEBOOKS
        unknown = [n for n in names if n not in NOTEBOOKS]
        if unknown:
            raise config.ParameterError(f"notebooks={unknown} are unknown; allowed values: {', '.join(NOTEBOOKS)}")
        overrides = {k: yaml.safe_load(v) for k, v in args.parameter}
        declared = set().union(*check_parameters(names, args.profile, overrides).values())
        unknown = sorted(set(overrides) - declared)
        if unknown:
            raise config.ParameterError(f"-p {unknown}: no selected notebook has such a parameter; allowed: "
                                        f"{', '.join(sorted(declared))}")
    except config.ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from . import estimate
    # the estimate of what is left, before anything runs (finished cells cost nothing; `--estimate`: only this)
    estimate.print_estimate(args.profile, overrides, [n for n in STUDY if n in names], executor=args.executor,
                            strict=args.estimate)
    if args.estimate:
        return 0
    import logging
    import signal
    # `timeout`, Slurm and `kill` send SIGTERM: raise instead of dying silently, so the piece is logged (execute)
    signal.signal(signal.SIGTERM, _terminated)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    for name in [n for n in NOTEBOOKS if n in names]:
        print(f"[reproduce] {name} on {args.profile} ...", flush=True)
        execute(name, args.profile, overrides, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
