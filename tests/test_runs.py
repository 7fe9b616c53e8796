import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from synthstudy import runs


def test_stable_hash_ignores_dict_order_and_sees_values():
    assert runs.stable_hash({"a": 1, "b": [1, 2]}) == runs.stable_hash({"b": [1, 2], "a": 1})
    assert runs.stable_hash({"a": 1}) != runs.stable_hash({"a": 2})


def test_run_folder_holds_params_environment_and_records(isolated_results):
    run = runs.Run("demo", "smoke", {"x": 1}, device="cpu")
    assert run.dir == isolated_results / "smoke" / "demo"
    env = json.loads((run.dir / "environment.json").read_text())
    assert env["versions"]["torch"] and env["device"] == "cpu" and "sha" in env["git"]
    assert env["cpu_model"] == runs.cpu_model() and env["cpu_model"].strip()   # names the part that made the numbers
    assert json.loads((run.dir / "params.json").read_text()) == {"x": 1, "run_label": "smoke", "overrides": {}}


def test_grid_skips_finished_cells_and_reruns_changed_ones(isolated_results):
    calls = []
    def cell(key, cell_dir):
        calls.append(key["n"])
        runs.save_npy(cell_dir / "indices.npy", np.arange(key["n"]))
        return {"score": key["n"] * 2}
    run = runs.Run("demo", "smoke", {})
    first = run.grid([{"z": 0, "n": 1}, {"z": 0, "n": 2}], cell, progress=False)
    again = runs.Run("demo", "smoke", {}).grid([{"z": 0, "n": 1}, {"z": 0, "n": 2}, {"z": 0, "n": 3}], cell,
                                               progress=False)
    assert calls == [1, 2, 3]
    assert [r["metrics"]["score"] for r in again] == [2, 4, 6]
    assert first[0] == again[0]
    # a row computed now and one loaded from disk have their columns in the same order (the tables match)
    assert list(runs.flatten(again[2])) == list(runs.flatten(again[0])) == list(runs.flatten(first[0]))
    assert np.array_equal(np.load(run.cell_dir({"z": 0, "n": 3}) / "indices.npy"), np.arange(3))


def test_flatten_keeps_generator_settings_as_json_and_leaves_other_dicts_to_the_record():
    record = {"key": {"generator": "flow", "gen_config": {"steps": 64000, "guidance": 1.0},
                      "gen_identity": {"config": {"width": 8}}, "rare_classes": [0, 4]},
              "metrics": {"cas": 0.9, "per_class": [0.1]}, "seconds": 2.0}
    row = runs.flatten(record)
    assert row == {"generator": "flow", "gen_config": '{"guidance": 1.0, "steps": 64000}', "cas": 0.9, "seconds": 2.0}
    assert "gen_config" not in runs.flatten({**record, "key": {"generator": "flow"}})


def test_find_record_reads_another_runs_finished_cell_and_nothing_else(isolated_results):
    runs.Run("demo", "smoke", {}).grid([{"n": 1, "seed": 0}], lambda k, d: {"score": 7}, progress=False)
    found = runs.find_record("smoke", "demo", {"n": 1, "seed": 0})
    assert found["metrics"] == {"score": 7}
    assert runs.find_record("smoke", "demo", {"n": 1, "seed": 1}) is None          # not computed
    assert runs.find_record("smoke", "other", {"n": 1, "seed": 0}) is None         # no such run
    assert not (isolated_results / "smoke" / "other").exists()                     # and none was created


def test_grid_refuses_duplicate_cells():
    with pytest.raises(ValueError, match="twice"):
        runs.Run("demo", "smoke", {}).grid([{"n": 1}, {"n": 1}], lambda k, d: {}, progress=False)


def test_atomic_write_gives_an_ordinary_file_mode(tmp_path):
    import os
    runs.write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask      # not mkstemp's private 0600


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "r.json"
    runs.write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        runs.write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]       # no temp file left behind


def test_a_write_keeps_a_live_writers_temporary_and_removes_a_dead_ones(tmp_path):
    """Two workers may save one shared cache file at once: neither may delete the other's in-flight temporary
    (CI stop 29 failed so), while a killed writer's debris is still cleaned up."""
    path = tmp_path / "key.json"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    live = tmp_path / f".key.json.w{os.getpid()}_{runs._HOST_TAG}.abc123.tmp"
    dead = tmp_path / f".key.json.w{ended.pid}_{runs._HOST_TAG}.def456.tmp"
    foreign_fresh = tmp_path / ".key.json.w1_0123abcd.ghi789.tmp"
    foreign_old = tmp_path / ".key.json.w1_0123abcd.jkl012.tmp"
    for temporary in (live, dead, foreign_fresh, foreign_old):
        temporary.write_text("partial")
    day_ago = time.time() - runs._FOREIGN_TEMPORARY_AGE_S - 60
    os.utime(foreign_old, (day_ago, day_ago))
    runs.write_json(path, {"ok": 1})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert live.exists() and foreign_fresh.exists()
    assert not dead.exists() and not foreign_old.exists()


def test_cache_builds_once_and_returns_the_same_artifact(isolated_results):
    builds = []
    def build():
        builds.append(1)
        return {"weights": np.arange(4)}
    a = runs.cached("demo", {"n": 5}, build)
    b = runs.cached("demo", {"n": 5}, build)
    c = runs.cached("demo", {"n": 6}, build)
    assert len(builds) == 2 and np.array_equal(a["weights"], b["weights"]) and c is not None


def test_parallel_workers_missing_the_cache_together_build_the_artifact_once(tmp_path):
    """Executor workers share results/cache: a second worker that misses while the first builds waits for its
    artifact instead of training the same model again."""
    script = tmp_path / "build.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from synthstudy import runs

        def build():
            with open({str(tmp_path / "builds.log")!r}, "a") as log:
                log.write("built\\n")
            time.sleep(1.5)
            return {{"value": 7}}

        print(runs.cached("demo", {{"n": 1}}, build)["value"])
    """))
    env = {**os.environ, "SYNTHSTUDY_RESULTS": str(tmp_path / "res"), "PYTHONPATH": os.getcwd()}
    workers = [subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0].strip() for w in workers]
    assert outputs == ["7", "7"]
    assert (tmp_path / "builds.log").read_text() == "built\n"


def test_cache_made_on_a_gpu_loads_on_a_cpu_only_machine(isolated_results, monkeypatch):
    """A cache filled on a lent GPU (artifacts saved as CUDA tensors) and resumed on a laptop: the paper run's audits
    stopped here once. Saving with the storage location forced to cuda:0 writes such a file on any machine."""
    import torch
    import torch.serialization
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        runs.cached("demo", {"gpu": True}, lambda: {"weights": torch.arange(3.0)})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = runs.cached("demo", {"gpu": True}, lambda: pytest.fail("the cached artifact was rebuilt"))
    assert loaded["weights"].device.type == "cpu" and loaded["weights"].tolist() == [0.0, 1.0, 2.0]


def test_killed_grid_resumes_without_corrupt_or_duplicate_records(tmp_path):
    """Kill a grid mid-cell with SIGKILL, rerun it: every record parses and each cell appears once."""
    script = tmp_path / "grid.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        from synthstudy import runs
        def cell(key, cell_dir):
            if key["n"] == 2 and sys.argv[1] == "slow":
                time.sleep(60)                      # gets killed here
            return {"n2": key["n"] ** 2}
        run = runs.Run("demo", "smoke", {})
        run.grid([{"n": n} for n in range(4)], cell, progress=False)
        print("done", flush=True)
    """))
    env = {**os.environ, "SYNTHSTUDY_RESULTS": str(tmp_path / "res"), "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, str(script), "slow"], env=env)
    cells = tmp_path / "res" / "smoke" / "demo" / "cells"
    for _ in range(300):                            # wait until cells 0 and 1 are recorded
        if cells.exists() and len(list(cells.glob("*/record.json"))) == 2:
            break
        proc.poll()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(cells.glob("*/record.json"))) == 2
    out = subprocess.run([sys.executable, str(script), "fast"], env=env, capture_output=True, text=True)
    assert "done" in out.stdout, out.stderr
    records = [json.loads(p.read_text()) for p in cells.glob("*/record.json")]
    assert sorted(r["key"]["n"] for r in records) == [0, 1, 2, 3]
    assert not list(cells.rglob("*.tmp"))


def score_cell(key, cell_dir, offset=0):
    """A shippable cell function: module-level, so a submitit job imports it (tests/ is on the job's PYTHONPATH)."""
    return {"score": key["n"] + offset, "pid": os.getpid()}


def failing_cell(key, cell_dir):
    if key["n"] == 1:
        raise RuntimeError("boom")
    return {"ok": True}


@pytest.fixture
def jobs_import_tests(monkeypatch):
    """submitit's local jobs are fresh processes: let them import this test module like the package's cells."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))


def test_local_executor_runs_cells_in_subprocesses_with_the_same_records(isolated_results, monkeypatch,
                                                                          jobs_import_tests):
    """submitit's local executor: each cell runs in its own process and writes its own record; a rerun (inline)
    finds them all finished; the results equal an inline run's."""
    monkeypatch.setenv("SYNTHSTUDY_PARALLEL", "2")
    cell = functools.partial(score_cell, offset=100)      # arguments travel with the partial
    keys = [{"n": n} for n in range(3)]
    records = runs.Run("demo", "smoke", {}).grid(keys, cell, progress=False, executor="local")
    assert [r["metrics"]["score"] for r in records] == [100, 101, 102]
    assert all(r["metrics"]["pid"] != os.getpid() for r in records)
    inline = runs.Run("inline", "smoke", {}).grid(keys, cell, progress=False, executor="inline")
    assert [r["metrics"]["score"] for r in inline] == [100, 101, 102]
    assert all(r["metrics"]["pid"] == os.getpid() for r in inline)
    calls = []
    again = runs.Run("demo", "smoke", {}).grid(keys, lambda k, d: calls.append(k) or {}, progress=False)
    assert calls == [] and again == records


def test_a_failing_job_is_reported_and_its_cell_stays_unfinished(isolated_results, jobs_import_tests):
    run = runs.Run("demo", "smoke", {})
    with pytest.raises(RuntimeError, match="(?s)1 cell.*failed.*n=1.*boom"):
        run.grid([{"n": 0}, {"n": 1}], failing_cell, progress=False, executor="local")
    assert run.load({"n": 0}) is not None and run.load({"n": 1}) is None


def test_an_executor_refuses_cells_it_cannot_ship_before_submitting_anything(isolated_results):
    def notebook_cell(key, cell_dir):                     # what a notebook-defined function is: not importable
        return {}

    run = runs.Run("demo", "smoke", {})
    for bad, name in ((notebook_cell, "notebook_cell"), (lambda k, d: {}, "lambda"),
                      (functools.partial(score_cell, offset=threading.Lock()), "score_cell")):
        with pytest.raises(ValueError, match=f"cannot ship cell function .*{name}"):
            run.grid([{"n": 0}], bad, progress=False, executor="local")
    assert not (run.dir / "submitit").exists()             # nothing was submitted
    runs.check_shippable(functools.partial(score_cell, offset=1))     # importable + picklable: fine
    from synthstudy import cells
    runs.check_shippable(cells.reuse_or_run("smoke", ("baseline",), device="cpu"))


def test_the_slurm_path_builds_the_jobs_it_would_submit(isolated_results, monkeypatch, tmp_path, jobs_import_tests):
    """No cluster here: stand-in `srun` / `sbatch` let submitit's own Slurm machinery build and "submit" the cells
    of a grid; the batch script, its parameters and the pickled job (the cell function by reference) are checked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho \"$@\" >> \"$SBATCH_LOG\"\necho 'Submitted batch job 4242'\n")
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_LOG", str(tmp_path / "sbatch.log"))
    for name, value in {"SYNTHSTUDY_SLURM_PARTITION": "gpu", "SYNTHSTUDY_SLURM_GPUS": "1", "SYNTHSTUDY_SLURM_CPUS": "4",
                        "SYNTHSTUDY_SLURM_TIMEOUT_MIN": "90", "SYNTHSTUDY_PARALLEL": "3"}.items():
        monkeypatch.setenv(name, value)
    ex, threads = runs.make_executor("slurm", tmp_path / "submitit", "synthstudy-demo")
    assert threads == 4
    script = ex._executor._make_submission_file_text("python -m submitit.core._submit", "UID")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --cpus-per-task=4", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --time=90", "#SBATCH --job-name=synthstudy-demo"):
        assert line in script, line
    with ex.batch():
        jobs = [ex.submit(runs._job, str(tmp_path / f"cell{n}"), {"n": n}, functools.partial(score_cell, offset=1), 4)
                for n in range(5)]
    assert {job.job_id.split("_")[0] for job in jobs} == {"4242"}          # one array of 5, 3 at a time
    submitted = "".join(p.read_text() for p in (tmp_path / "submitit").rglob("*.sh"))
    assert "#SBATCH --array=0-4%3" in submitted
    import cloudpickle
    pickled = sorted((tmp_path / "submitit").rglob("*_submitted.pkl"))
    assert len(pickled) == 5
    delayed = cloudpickle.loads(pickled[0].read_bytes())
    assert delayed.function is runs._job and delayed.args[2].func is score_cell   # by reference, importable


def test_unknown_executor_is_refused(monkeypatch):
    monkeypatch.setenv("SYNTHSTUDY_EXECUTOR", "ray")
    with pytest.raises(ValueError, match="executor='ray'.*inline, local, slurm"):
        runs.Run("demo", "smoke", {}).grid([{"n": 0}], lambda k, d: {}, progress=False)
