"""The scale-out path for the whole study: every notebook's grid under EXECUTOR=local gives the inline run's records.

`make test-executors` (and .ci/run) runs this; `make test` skips it (marker `executors`): it executes the smoke
study twice, a few minutes on 2 cores. Both runs use one torch thread per process (a local job gets cores /
SYNTHSTUDY_PARALLEL threads), because a different thread count may change the last bits of a float reduction and,
after training, an accuracy.
"""
import json
import re

import pandas as pd
import pytest

from synthstudy import reproduce, runs

# what differs between two runs of the same cell: wall times, rates, process ids, where a record came from
VOLATILE = ("seconds", "per_s", "/s", "pid", "finished", "git", "reused_from", "job")


def volatile(column: str) -> bool:
    """A wall time or a rate: "train_seconds", "images_per_s", "samples/s", a summary's "train s" or "train s / cell".

    The unit "s" as a word of its own marks a summary's time column (CI once failed on "train s / cell": 0 vs 1 s).
    """
    return any(v in column for v in VOLATILE) or re.search(r"(^|\s)s(\s|$)", column) is not None


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """The table without its volatile columns (rows are in the grid's key order in both runs)."""
    return frame[[c for c in frame.columns if not volatile(c)]]


def run_study(root, monkeypatch, executor: str) -> float:
    """Run the smoke study under `executor`; returns its wall time in seconds (printed by the test, for the README)."""
    import time
    start = time.perf_counter()
    with monkeypatch.context() as patch:
        patch.setenv("SYNTHSTUDY_RESULTS", str(root))
        patch.setenv("SYNTHSTUDY_THREADS", "1")
        patch.setenv("SYNTHSTUDY_EXECUTOR", executor)
        patch.setenv("SYNTHSTUDY_PARALLEL", "2")
        for name in runs.STUDY_NOTEBOOKS:
            reproduce.execute(name, "smoke", progress=False)
    return time.perf_counter() - start


@pytest.mark.executors
def test_the_whole_smoke_study_gives_the_same_records_under_the_local_executor(tmp_path, monkeypatch):
    inline_seconds = run_study(tmp_path / "inline", monkeypatch, "inline")
    local_seconds = run_study(tmp_path / "local", monkeypatch, "local")
    print(f"\nsmoke study wall time, one run: inline (1 thread) {inline_seconds:.0f} s, EXECUTOR=local with 2 jobs "
          f"at a time (1 thread each) {local_seconds:.0f} s, on {runs.cpu_model()}")
    differences = []                      # every table compared before failing, so one run shows them all
    for name in runs.STUDY_NOTEBOOKS:
        inline_dir, local_dir = tmp_path / "inline" / "smoke" / name, tmp_path / "local" / "smoke" / name
        jobs = list((local_dir / "submitit").glob("*_result.pkl")) + list((local_dir / "submitit").glob("*.out"))
        assert jobs, f"{name}: no cell ran as a local job"
        for table in sorted(p.name for p in inline_dir.glob("*.csv")):
            a, b = pd.read_csv(inline_dir / table), pd.read_csv(local_dir / table)
            if list(a.columns) != list(b.columns):                      # same columns in the same order
                differences.append(f"{name}/{table}: columns {list(a.columns)} != {list(b.columns)}")
                continue
            try:
                pd.testing.assert_frame_equal(comparable(a), comparable(b), check_exact=False, rtol=1e-9,
                                              obj=f"{name}/{table}")
            except AssertionError as err:
                differences.append(str(err))
        inline_keys = {json.dumps(json.loads(p.read_text())["key"], sort_keys=True)
                       for p in (inline_dir / "cells").glob("*/record.json")}
        local_keys = {json.dumps(json.loads(p.read_text())["key"], sort_keys=True)
                      for p in (local_dir / "cells").glob("*/record.json")}
        if inline_keys != local_keys or not inline_keys:
            differences.append(f"{name}: the cells differ")
    assert not differences, "\n\n".join(differences)
