"""Run records and artifact caches: one folder per run, one record per grid cell, atomic writes, resumable grids.

Layout (under `results_root()`, default `<repo>/results`, override with $SYNTHSTUDY_RESULTS):

    results/<profile>/<notebook>/            one run: what a notebook execution produced
        params.json                          resolved, validated parameters
        environment.json                     git sha, library versions, device, threads, host
        cells/<slug>-<hash>/record.json      one finished cell: its key, metrics, timings
        cells/<slug>-<hash>/indices.npy      the stratified subset it trained on
        metrics.csv                          tidy table of the current grid's cells (what plots read)
        <notebook>.ipynb                     the executed notebook (written by papermill)
    results/cache/<kind>/<hash>/             expensive artifacts (trained generators, sample pools)

A cell's folder name hashes everything that determines its result, so a rerun skips finished cells (an
interrupted `make reproduce` resumes) and a changed parameter runs only the cells it touches. Every write goes
to a temporary file in the same folder and is renamed into place, so a killed run never leaves a half record.
"""
from __future__ import annotations

import fcntl
import functools
import glob
import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def results_root() -> Path:
    return Path(os.environ.get("SYNTHSTUDY_RESULTS", PROJECT_ROOT / "results"))


# ---------------------------------------------------------------- atomic writes
def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to `path`; on success rename it onto `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a write killed outright (SIGKILL, power loss) cannot clean up after itself: the next write of the same file
    # removes its hidden temporary, but only one whose writer is gone. Cells write their own folders, yet the
    # artifact cache is shared: two executor workers can save the same generator at once (CI, stop 29: one worker
    # deleted the other's in-flight temporary and that worker's rename failed). The temporary's name holds its
    # writer's pid and host (and pid namespace); another host's (a cluster on a shared disk) or one of another
    # file whose name extends this one's counts as stale only after a day.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):     # names may hold [ or *
        if _writer_gone(stale, stale.name[len(path.name) + 2:]):
            stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.w{os.getpid()}_{_HOST_TAG}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            os.chmod(tmp, _FILE_MODE)     # mkstemp makes 0600 files; results are meant to be shared like any file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _pid_namespace() -> str:
    """The pid namespace this process's pids are numbered in (containers sharing a host name can differ)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


_HOST_TAG = hashlib.sha1(f"{platform.node()}:{_pid_namespace()}".encode()).hexdigest()[:8]
_WRITER_TAG = re.compile(r"w(\d+)_([0-9a-f]{8})\.[A-Za-z0-9_]+\.tmp")     # mkstemp's random part, then .tmp
_FOREIGN_TEMPORARY_AGE_S = 86_400       # another host's writer: no pid to ask, so a day without change means debris


def _writer_gone(temporary: Path, tag: str) -> bool:
    """Whether the writer of `temporary` (its name's part after the target's, `tag`) has ended: debris to remove."""
    match = _WRITER_TAG.fullmatch(tag)
    if match and match.group(2) == _HOST_TAG and 0 < int(match.group(1)) < 2 ** 31:
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            return True
        except PermissionError:         # alive, owned by another user
            pass
        return False
    try:                                # another host's writer, or a temporary from before writers were tagged
        return time.time() - temporary.stat().st_mtime > _FOREIGN_TEMPORARY_AGE_S
    except FileNotFoundError:
        return False


def write_json(path: Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def save_torch(path: Path, obj: Any) -> None:
    import torch
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):          # pydantic models
        return value.model_dump()
    raise TypeError(f"cannot store {type(value).__name__} in a JSON record")


# ---------------------------------------------------------------- hashing and environment
def stable_hash(obj: Any, length: int = 12) -> str:
    """Hash of a JSON-able object, independent of dict order: the identity of a cell or an artifact."""
    text = json.dumps(obj, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def git_state() -> dict:
    """The commit (and whether tracked files differ from it) of the code this process runs: read once, when first
    asked, so records written hours into a run name the code it started with, not commits made meanwhile."""
    return dict(_git_state())


@functools.lru_cache(maxsize=1)
def _git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    try:
        sha = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"sha": "unknown", "dirty": None}
    if sha.returncode != 0:
        return {"sha": "unknown", "dirty": None}
    return {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; else platform.processor()): speed numbers differ several-fold
    between VMs that all call themselves "2 cores, x86_64", so every record names the part that produced it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str | None = None) -> dict:
    """What a rerun needs to know about where a result came from."""
    from importlib.metadata import PackageNotFoundError, version

    import torch
    versions = {}
    for pkg in ("torch", "torchvision", "timm", "numpy", "scikit-learn", "papermill", "synthstudy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "git": git_state(),
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "device": device,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------- runs and cells
# The fields a cell folder's readable name starts with, in this order; the rest follow alphabetically. The name
# does not depend on the order in which a notebook wrote its key (the hash never did), so two notebooks building
# the same key find the same folder.
_SLUG_FIRST = ("arm", "generator", "n", "seed", "m", "synthetic_fraction", "sigma", "method", "view")


def _slug(key: dict) -> str:
    first = [k for k in _SLUG_FIRST if k in key]
    ordered = first + sorted(k for k in key if k not in first)
    text = "-".join(f"{k}={key[k]}" for k in ordered if not isinstance(key[k], (dict, list)))
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", text)[:80]


def check_shippable(run_cell) -> None:
    """Refuse, before anything is submitted, a cell function that a submitit job could not load.

    A job unpickles the function in a fresh process, so it must be reachable by import: a module-level function
    of an importable module (the package's `synthstudy.cells` and friends), or a `functools.partial` of one with
    picklable arguments. A function defined in a notebook (`__main__`), a closure or a lambda is not.
    """
    import functools
    import importlib
    import pickle

    func = run_cell
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__qualname__", repr(func))
    module = getattr(func, "__module__", None)
    hint = ("cell functions for EXECUTOR=local/slurm must be module-level functions of an importable module "
            "(e.g. synthstudy.cells.classifier) or functools.partial of one")
    if module in (None, "__main__") or "<locals>" in name or "<lambda>" in name:
        raise ValueError(f"cannot ship cell function {name!r} (defined in {module or 'no module'}): {hint}")
    try:
        target = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        raise ValueError(f"cannot ship cell function {module}.{name}: it is not importable; {hint}") from None
    if getattr(target, "__wrapped__", target) is not getattr(func, "__wrapped__", func):
        raise ValueError(f"cannot ship cell function {module}.{name}: the importable name is another object; {hint}")
    try:
        pickle.dumps(run_cell)
    except Exception as err:            # noqa: BLE001 -- any pickling failure means the job cannot get it
        raise ValueError(f"cannot ship cell function {module}.{name}: its arguments do not pickle ({err}); "
                         f"{hint}") from None


# Parameters that change where or how visibly a run computes, not what it measures: they never make a run differ
# from its profile. (A GPU's numbers differ from a CPU's in the last bits only, within the CIs.)
NEUTRAL_PARAMETERS = frozenset({"profile", "device", "progress", "allow_download", "publish_figures", "update_readme"})


def run_label(profile: str, params: dict) -> tuple[str, dict]:
    """(label, overrides) of a run: `profile` when its parameters equal configs/<profile>.yaml's, else
    "<profile>+overrides" with {name: [profile value, run value]} for every parameter that differs.

    A profile with no configs/ file (a user's own label) is its own reference: no overrides.
    """
    path = PROJECT_ROOT / "configs" / f"{profile}.yaml"
    if not path.is_file():
        return profile, {}
    import yaml
    reference = yaml.safe_load(path.read_text()) or {}
    given = json.loads(json.dumps(params, default=_jsonable))
    overrides = {k: [reference[k], v] for k, v in given.items()
                 if k in reference and k not in NEUTRAL_PARAMETERS and v != reference[k]}
    return (f"{profile}+overrides" if overrides else profile), overrides


class Run:
    """One execution of a notebook (or script): a folder with its parameters, environment and cells."""

    def __init__(self, notebook: str, profile: str, params: dict, device: str | None = None, root: Path | None = None):
        self.notebook, self.profile = notebook, profile
        self.dir = Path(root or results_root()) / profile / notebook
        self.label, overrides = run_label(profile, params)
        self.params = {**dict(params), "run_label": self.label, "overrides": overrides}
        write_json(self.dir / "params.json", self.params)
        write_json(self.dir / "environment.json", environment(device))

    def cell_dir(self, key: dict) -> Path:
        return self.dir / "cells" / f"{_slug(key)}-{stable_hash(key)}"

    def load(self, key: dict) -> dict | None:
        """The finished record of a cell, or None if it has not finished (or was written by another key)."""
        return _read_record(self.cell_dir(key) / "record.json", key)

    def grid(self, keys: Iterable[dict], run_cell: Callable[[dict, Path], dict], progress: bool = True,
             describe: Callable[[dict, dict], str] | None = None, executor: str | None = None) -> list[dict]:
        """Run every cell not finished yet; return all records in the order of `keys`.

        `executor` (default: $SYNTHSTUDY_EXECUTOR, else "inline") picks where the unfinished cells run: "inline" in
        this process, one after another; "local" or "slurm" as submitit jobs (see `_run_elsewhere`). Either way
        each cell writes its own record atomically, so the records and the skip-on-rerun logic are the same.

        `run_cell(key, cell_dir)` returns the cell's metrics (a dict); it may save side files in `cell_dir`.
        A finished cell is skipped, so an interrupted grid resumes where it stopped. After each new cell a one-line
        summary is printed (`describe(key, metrics)` or the metrics themselves).
        """
        from .progress import tqdm
        keys = list(keys)
        if len({stable_hash(k) for k in keys}) != len(keys):
            raise ValueError("the grid lists the same cell twice")
        executor = executor or executor_from_env()
        records, todo = [], 0
        if executor != "inline":
            pending = [k for k in keys if self.load(k) is None]
            self._run_elsewhere(pending, run_cell, executor, progress, describe)
            todo = len(pending)
        bar = tqdm(keys, desc=f"{self.notebook} cells", disable=not progress)
        for key in bar:
            record = self.load(key)
            if record is None:
                todo += 1
                record = run_and_record(self.cell_dir(key), key, run_cell)
                metrics = record["metrics"]
                line = describe(key, metrics) if describe else f"{_slug(key)}: {metrics}"
                bar.write(f"[{self.notebook}] {line} ({record['seconds']:.1f} s)")
            # as stored on disk (sorted keys): a record computed now and one loaded from an earlier run or a job
            # give the same row, columns in the same order
            records.append(json.loads(json.dumps(record, default=_jsonable, sort_keys=True)))
        if progress:
            print(f"[{self.notebook}] {len(keys)} cells: {len(keys) - todo} reused from earlier runs, {todo} run now")
        return records

    def _run_elsewhere(self, keys: list[dict], run_cell, executor: str, progress: bool, describe) -> None:
        """Run `keys` as submitit jobs and wait for them; each job writes its cell's record itself.

        "local": subprocesses on this machine, $SYNTHSTUDY_PARALLEL at a time (default 1), each with
        cores / parallel torch threads. "slurm": one job per cell, at most $SYNTHSTUDY_PARALLEL running at once
        (a Slurm array throttle), with $SYNTHSTUDY_SLURM_PARTITION, $SYNTHSTUDY_SLURM_TIMEOUT_MIN (default 60),
        $SYNTHSTUDY_SLURM_GPUS (default 0) and $SYNTHSTUDY_SLURM_CPUS (default 2). The jobs' logs are in
        <run>/submitit/. A failed job raises here after the others finished; its cell stays unfinished.
        """
        if not keys:
            return
        check_shippable(run_cell)
        from .progress import tqdm
        parallel = _env_int("SYNTHSTUDY_PARALLEL", 1)
        folder = self.dir / "submitit"
        ex, threads = make_executor(executor, folder, f"synthstudy-{self.notebook}")
        bar = tqdm(total=len(keys), desc=f"{self.notebook} cells ({executor})", disable=not progress)
        failures = []
        # local: submit `parallel` jobs, wait, repeat (submitit's local executor has no throttle of its own);
        # slurm: one array, throttled by the scheduler
        waves = [keys[i:i + parallel] for i in range(0, len(keys), parallel)] if executor == "local" else [keys]
        for wave in waves:
            with ex.batch():
                jobs = [ex.submit(_job, str(self.cell_dir(k)), k, run_cell, threads) for k in wave]
            for key, job in zip(wave, jobs):
                try:
                    record = job.result()
                except Exception as err:             # noqa: BLE001 -- report every failure, after the others ran
                    failures.append(f"{_slug(key)}: {err}")
                    continue
                line = describe(key, record["metrics"]) if describe else f"{_slug(key)}: {record['metrics']}"
                bar.update(1)
                bar.write(f"[{self.notebook}] {line} ({record['seconds']:.1f} s, {executor} job {job.job_id})")
        bar.close()
        if failures:
            raise RuntimeError(f"{len(failures)} cell(s) failed under executor={executor!r} (logs in {folder}):\n"
                               + "\n".join(failures))

    def write_table(self, rows: list[dict], name: str = "metrics.csv"):
        """Write a tidy table (one row per cell) as CSV; returns it as a pandas DataFrame."""
        import pandas as pd
        frame = pd.DataFrame(rows)
        with atomic_path(self.dir / name) as tmp:
            frame.to_csv(tmp, index=False)
        return frame

    def write_findings(self, lines: list[str]) -> list[str]:
        """Write the notebook's generated conclusions (markdown lines) to `findings.md` in the run folder, where the
        report's headline (synthstudy.headline) quotes them; returns the lines for display."""
        write_text(self.dir / FINDINGS_FILE, "\n".join(lines) + "\n")
        return lines


FINDINGS_FILE = "findings.md"
EXECUTORS = ("inline", "local", "slurm")
# The study's notebooks in execution order: later ones read what earlier ones cached (the baseline first). Here,
# not in reproduce, so that report and reproduce both read it without importing each other.
STUDY_NOTEBOOKS = ("baseline", "generators", "scaling", "multiview", "audits")


def make_executor(executor: str, folder: Path, name: str):
    """The configured submitit executor for "local" or "slurm", and the torch threads each job uses.

    "local": subprocesses, $SYNTHSTUDY_PARALLEL at a time, cores / parallel threads each. "slurm": one job per cell
    in an array throttled to $SYNTHSTUDY_PARALLEL, with $SYNTHSTUDY_SLURM_PARTITION, $SYNTHSTUDY_SLURM_CPUS (default
    2), $SYNTHSTUDY_SLURM_GPUS (default 0) and $SYNTHSTUDY_SLURM_TIMEOUT_MIN (default 60). tests/test_runs.py builds
    the Slurm one against stand-in `srun` / `sbatch` and inspects what it would submit.
    """
    import submitit
    parallel = _env_int("SYNTHSTUDY_PARALLEL", 1)
    if executor == "local":
        ex = submitit.AutoExecutor(folder=folder, cluster="local")
        threads = max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1) // parallel)
        ex.update_parameters(timeout_min=_env_int("SYNTHSTUDY_SLURM_TIMEOUT_MIN", 60 * 24))
        return ex, threads
    if executor != "slurm":
        raise ValueError(f"executor={executor!r} cannot submit jobs; allowed values: local, slurm")
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    threads = _env_int("SYNTHSTUDY_SLURM_CPUS", 2)
    extra = {"slurm_partition": os.environ["SYNTHSTUDY_SLURM_PARTITION"]} \
        if os.environ.get("SYNTHSTUDY_SLURM_PARTITION") else {}
    ex.update_parameters(timeout_min=_env_int("SYNTHSTUDY_SLURM_TIMEOUT_MIN", 60), cpus_per_task=threads,
                         gpus_per_node=_env_int("SYNTHSTUDY_SLURM_GPUS", 0), slurm_array_parallelism=parallel,
                         name=name, **extra)
    return ex, threads


def executor_from_env() -> str:
    """$SYNTHSTUDY_EXECUTOR (set by `make reproduce EXECUTOR=...`), "inline" when unset; checked."""
    name = os.environ.get("SYNTHSTUDY_EXECUTOR", "") or "inline"
    if name not in EXECUTORS:
        raise ValueError(f"executor={name!r} (SYNTHSTUDY_EXECUTOR) is unknown; allowed values: {', '.join(EXECUTORS)}")
    return name


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return int(value)


def run_and_record(cell_dir: Path, key: dict, run_cell: Callable[[dict, Path], dict]) -> dict:
    """Run one cell and write its record atomically (the record's presence is what marks the cell finished)."""
    start = time.perf_counter()
    metrics = run_cell(key, cell_dir)
    record = {"key": key, "metrics": metrics, "seconds": time.perf_counter() - start,
              "git": git_state()["sha"], "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(cell_dir / "record.json", record)
    return record


def _job(cell_dir: str, key: dict, run_cell, threads: int) -> dict:
    """What a submitit job runs: the cell, with torch threads set for the share of cores this job has."""
    os.environ["SYNTHSTUDY_THREADS"] = str(threads)
    import torch
    torch.set_num_threads(threads)
    return run_and_record(Path(cell_dir), key, run_cell)


# key fields that are dicts but tell cells of one grid apart, so the tidy table keeps them, as JSON text
JSON_COLUMNS = ("gen_config",)


def flatten(record: dict) -> dict:
    """A cell record as one flat row: the key's scalar fields (and JSON_COLUMNS as JSON text; other dicts and lists,
    such as a generator's identity, are left to the record), then scalar metrics, then seconds."""
    row = {k: v for k, v in record["key"].items() if not isinstance(v, (dict, list))}
    row.update({k: json.dumps(record["key"][k], sort_keys=True) for k in JSON_COLUMNS if k in record["key"]})
    row.update({k: v for k, v in record["metrics"].items() if not isinstance(v, (dict, list))})
    row["seconds"] = record["seconds"]
    return row


def read_table(profile: str, notebook: str, name: str = "metrics.csv", root: Path | None = None):
    """Read a run's tidy table, with a clear error when that run has not been made yet."""
    import pandas as pd
    path = Path(root or results_root()) / profile / notebook / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `make reproduce PROFILE={profile}` "
                                f"(or the {notebook} notebook on that profile) first")
    return pd.read_csv(path)


def find_record(profile: str, notebook: str, key: dict, root: Path | None = None) -> dict | None:
    """The finished record of `key` in another notebook's run, or None; opens (and writes) nothing else.

    Lets a notebook reuse a cell another one computed under the same key (the scaling notebook's real arm is the
    baseline's grid) instead of training it again. The key must be built exactly as that notebook builds it.
    """
    folder = f"{_slug(key)}-{stable_hash(key)}"
    path = Path(root or results_root()) / profile / notebook / "cells" / folder / "record.json"
    return _read_record(path, key)


def _read_record(path: Path, key: dict) -> dict | None:
    """The record at `path` if it exists and was written for `key` (guards against a hash collision)."""
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("key") == json.loads(json.dumps(key, default=_jsonable)) else None


# ---------------------------------------------------------------- artifact cache
def cached(kind: str, key: dict, build: Callable[..., Any], root: Path | None = None,
           resumable: bool = False) -> Any:
    """Return the artifact made by `build()` for `key`, building and saving it (torch.save) only on a miss.

    The cache folder is `results/cache/<kind>/<hash of key>/`, holding `artifact.pt` and `key.json`. An artifact
    saved on a GPU loads there again where CUDA exists, and on the CPU where it does not (a cache made on a lent
    GPU and resumed on a laptop: torch.load alone refuses CUDA tensors on a CPU-only machine). With `resumable`,
    `build(path)` gets `checkpoint.pt` in that folder for snapshots of a long build, deleted once the artifact is
    saved (copy the folder to another machine to continue a build there).
    """
    import torch
    folder = Path(root or results_root()) / "cache" / kind / stable_hash(key)
    path = folder / "artifact.pt"

    def load():
        return torch.load(path, weights_only=False, map_location=None if torch.cuda.is_available() else "cpu")

    if path.is_file():
        (folder / "checkpoint.pt").unlink(missing_ok=True)     # left by a build killed just after its save
        return load()
    # one builder per artifact: parallel workers that miss together wait for the first one's artifact instead of
    # each training it for minutes (and, on a GPU, ending with copies that differ in their last bits)
    with _exclusive(folder / ".build.lock"):
        if path.is_file():
            return load()
        artifact = build(folder / "checkpoint.pt") if resumable else build()
        save_torch(path, artifact)
        write_json(folder / "key.json", key)           # after the artifact: estimate.cache_index counts key.json
        (folder / "checkpoint.pt").unlink(missing_ok=True)
    return artifact


@contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive advisory lock on `lock_path` (flock: released when the file closes or the process dies)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
