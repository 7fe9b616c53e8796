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

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def results_root() -> Path:
    return Path(os.environ.get("SYNTHSTUDY_RESULTS", PROJECT_ROOT / "results"))


# ---------------------------------------------------------------- atomic writes
@contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to `path`; on success rename it onto `path` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def environment(device: str | None = None) -> dict:
    """What a rerun needs to know about where a result came from."""
    import torch
    from importlib.metadata import PackageNotFoundError, version
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
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "device": device,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ---------------------------------------------------------------- runs and cells
def _slug(key: dict) -> str:
    text = "-".join(f"{k}={v}" for k, v in key.items() if not isinstance(v, (dict, list)))
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", text)[:80]


class Run:
    """One execution of a notebook (or script): a folder with its parameters, environment and cells."""

    def __init__(self, notebook: str, profile: str, params: dict, device: str | None = None, root: Path | None = None):
        self.notebook, self.profile = notebook, profile
        self.dir = Path(root or results_root()) / profile / notebook
        self.params = dict(params)
        write_json(self.dir / "params.json", self.params)
        write_json(self.dir / "environment.json", environment(device))

    def cell_dir(self, key: dict) -> Path:
        return self.dir / "cells" / f"{_slug(key)}-{stable_hash(key)}"

    def load(self, key: dict) -> dict | None:
        """The finished record of a cell, or None if it has not finished (or was written by another key)."""
        path = self.cell_dir(key) / "record.json"
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record if record.get("key") == json.loads(json.dumps(key, default=_jsonable)) else None

    def grid(self, keys: Iterable[dict], run_cell: Callable[[dict, Path], dict], progress: bool = True,
             describe: Callable[[dict, dict], str] | None = None) -> list[dict]:
        """Run every cell not finished yet; return all records in the order of `keys`.

        `run_cell(key, cell_dir)` returns the cell's metrics (a dict); it may save side files in `cell_dir`.
        A finished cell is skipped, so an interrupted grid resumes where it stopped. After each new cell a one-line
        summary is printed (`describe(key, metrics)` or the metrics themselves).
        """
        from tqdm.auto import tqdm
        keys = list(keys)
        if len({stable_hash(k) for k in keys}) != len(keys):
            raise ValueError("the grid lists the same cell twice")
        records, todo = [], 0
        bar = tqdm(keys, desc=f"{self.notebook} cells", disable=not progress)
        for key in bar:
            record = self.load(key)
            if record is None:
                todo += 1
                cell_dir = self.cell_dir(key)
                start = time.perf_counter()
                metrics = run_cell(key, cell_dir)
                record = {"key": key, "metrics": metrics, "seconds": time.perf_counter() - start,
                          "git": git_state()["sha"], "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                write_json(cell_dir / "record.json", record)
                line = describe(key, metrics) if describe else f"{_slug(key)}: {metrics}"
                bar.write(f"[{self.notebook}] {line} ({record['seconds']:.1f} s)")
            records.append(json.loads(json.dumps(record, default=_jsonable)))
        if progress:
            print(f"[{self.notebook}] {len(keys)} cells: {len(keys) - todo} reused from earlier runs, {todo} run now")
        return records

    def write_table(self, rows: list[dict], name: str = "metrics.csv"):
        """Write a tidy table (one row per cell) as CSV; returns it as a pandas DataFrame."""
        import pandas as pd
        frame = pd.DataFrame(rows)
        with atomic_path(self.dir / name) as tmp:
            frame.to_csv(tmp, index=False)
        return frame


def flatten(record: dict) -> dict:
    """A cell record as one flat row: the key's fields, then scalar metrics, then seconds."""
    row = {k: v for k, v in record["key"].items() if not isinstance(v, (dict, list))}
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


# ---------------------------------------------------------------- artifact cache
def cached(kind: str, key: dict, build: Callable[[], Any], root: Path | None = None) -> Any:
    """Return the artifact made by `build()` for `key`, building and saving it (torch.save) only on a miss.

    The cache folder is `results/cache/<kind>/<hash of key>/`, holding `artifact.pt` and `key.json`.
    """
    import torch
    folder = Path(root or results_root()) / "cache" / kind / stable_hash(key)
    path = folder / "artifact.pt"
    if path.is_file():
        return torch.load(path, weights_only=False)
    artifact = build()
    save_torch(path, artifact)
    write_json(folder / "key.json", key)
    return artifact
