"""`make bench`: speed and accuracy of the real-data classifier on full Fashion-MNIST, as a printed table.

    python -m synthstudy.bench                       # both budgets x 3 seeds (~25 min on 2 cores)
    python -m synthstudy.bench --points 2min --seeds 0
    python -m synthstudy.bench --generators          # also: each quick-profile generator's fit time and samples/s
    python -m synthstudy.bench --as-if-peak 130      # budgets shrunk to what a 130-GFLOP/s machine would do in them

For each budget point (a wall-clock budget: training stops when it is spent, the LR schedule following elapsed
time) and each seed it trains the `cnn` classifier on all 60,000 training images (a fixed
recipe: nothing is selected, so no validation split is needed), scores the 10,000 test images, and reports
accuracy, training wall time, images/s, and the achieved GFLOP/s (FLOPs of one training step counted by
torch.utils.flop_counter) next to an fp32 matmul peak measured in the same run. Results are also written to
results/bench/bench.json and bench.md. Timings are only meaningful on an otherwise idle machine.

`--generators` adds one row per generator of a profile (default quick), trained on the whole pool exactly as the
notebooks train it (so the cache under results/cache is shared: a cached model is loaded, a missing one is trained
here): its step budget, the wall time of its fit as recorded when it was trained (`history["seconds"]`, on the
machine that trained it), and the sampling speed measured now (`--gen-samples` balanced samples, batches of 500).

`--as-if-peak G` answers "would a slower machine meet the targets?" without one: each budget is multiplied by
G / (the peak measured here), so training gets the share of the work a machine with fp32 matmul peak G would do in
the full budget, provided it reaches the same share of its peak as this one (the table's last column). Speed on
2-core VMs varies several-fold (this project has measured peaks of 47 and 400 GFLOP/s); design.md's reference is
≈130. Those rows are labelled "<point> as if G GFLOP/s" and kept beside the real-time ones in bench.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from . import data, metrics, models, runs, sources, train

# name -> (TrainConfig overrides, wall-clock budget in s). Training stops when the budget is spent and the LR
# schedule runs on elapsed time, so each point is "the best this recipe does in that time on this machine";
# `steps` is only an upper bound. Flips only: at these short budgets random translations slowed fitting more
# than they helped (measured: 93.45% flip vs 93.42% flip+crop at the same 6,800 steps).
POINTS = {
    "2min": (dict(steps=10**6, max_seconds=120.0, batch_size=128, lr=0.1, augment="flip"), 120),
    "5min": (dict(steps=10**6, max_seconds=300.0, batch_size=128, lr=0.1, augment="flip"), 300),
}


def matmul_peak_gflops(n: int = 2048, repeats: int = 30) -> float:
    """Best-of-`repeats` fp32 GEMM rate with the current thread count: the ceiling for dense compute here.

    Best of many, after a warm-up: on a VM the rate of single GEMMs swings with CPU frequency and neighbours (one
    bench run measured 47 GFLOP/s, then trained at 48; a later run on the same machine measured 65)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def train_flops_per_image(model_name: str, cfg: train.TrainConfig, image_shape, num_classes: int) -> float:
    """FLOPs of one forward+backward pass, per image (counted, not estimated)."""
    from torch.utils.flop_counter import FlopCounterMode
    model = models.create_model(model_name, image_shape[0], num_classes, image_shape[-1])
    x = torch.randn(cfg.batch_size, *image_shape)
    y = torch.randint(0, num_classes, (cfg.batch_size,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / cfg.batch_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", nargs="+", default=list(POINTS), choices=list(POINTS),
                        help="budget points to run (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per point (default: 0 1 2)")
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits"],
                        help="fashion_mnist (the benchmark) | digits (tiny; for tests)")
    parser.add_argument("--model", default="cnn", help="classifier name in synthstudy.models (default: cnn)")
    parser.add_argument("--device", default="cpu", help="cpu (the reference) | auto | cuda")
    parser.add_argument("--generators", action="store_true",
                        help="also time each generator of --gen-profile: fit (as recorded) and sampling (now)")
    parser.add_argument("--gen-profile", default="quick", help="profile whose gen_steps are used (default: quick)")
    parser.add_argument("--gen-samples", type=int, default=2000, help="samples drawn to time sampling (default: 2000)")
    parser.add_argument("--no-classifier", action="store_true", help="skip the classifier budget points")
    parser.add_argument("--as-if-peak", type=float, default=0.0, metavar="GFLOPS",
                        help="shrink every budget by GFLOPS / the peak measured here, estimating what a machine with "
                             "that fp32 matmul peak (e.g. 130, design.md's reference) would reach; rows are labelled "
                             "so and kept beside the real-time rows in bench.json")
    args = parser.parse_args(argv)
    if args.gen_samples <= 0:
        parser.error(f"--gen-samples={args.gen_samples} must be a positive integer")
    if args.as_if_peak < 0:
        parser.error(f"--as-if-peak={args.as_if_peak} must be a positive GFLOP/s figure (or 0: off)")
    models.create_model(args.model, 1, 10, 28)   # refuse unknown names before loading anything
    splits = None if args.no_classifier else data.load(args.dataset)
    threads = train.cpu_threads()
    torch.set_num_threads(threads)
    peak = matmul_peak_gflops()
    print(f"fp32 matmul peak on {threads} threads of {runs.cpu_model()}: {peak:.1f} GFLOP/s", flush=True)
    # a slower machine does the same work in proportionally more time, so its budget is a smaller share of ours
    # (assumes it reaches the same share of its peak; this bench reports that share for ours)
    scale = min(1.0, args.as_if_peak / peak) if args.as_if_peak else 1.0
    nothing_to_scale = bool(args.as_if_peak) and scale == 1.0
    if nothing_to_scale:
        print(f"--as-if-peak {args.as_if_peak:g}: this machine's peak is no higher, its real-time rows already "
              "answer that; nothing to run", flush=True)
    rows = []
    for name in ([] if args.no_classifier or nothing_to_scale else args.points):
        overrides, budget = POINTS[name]
        point = f"{name} as if {args.as_if_peak:.0f} GFLOP/s" if args.as_if_peak else name
        overrides = {**overrides, "max_seconds": overrides["max_seconds"] * scale}
        budget = round(budget * scale, 1)
        probe_cfg = train.TrainConfig(**overrides, device=args.device, progress=False)
        flops = train_flops_per_image(args.model, probe_cfg, splits.image_shape, splits.num_classes)
        for seed in args.seeds:
            cfg = train.TrainConfig(**overrides, seed=seed, device=args.device, progress=False)
            model = models.create_model(args.model, splits.image_shape[0], splits.num_classes,
                                        splits.image_shape[-1], seed=seed)
            result = train.fit(model, sources.ImageSetSource(splits.train), cfg)
            acc = train.evaluate(result.model, splits.test, cfg)["accuracy"]
            row = {"point": point, "dataset": args.dataset, "budget_s": budget, "seed": seed, "model": args.model,
                   **overrides, "cpu_model": runs.cpu_model(), "steps_taken": result.steps,
                   "test_accuracy": acc, "train_seconds": result.seconds, "images_per_s": result.images_per_s,
                   "gflops": flops * result.images_per_s / 1e9, "peak_gflops": peak, "threads": threads}
            rows.append(row)
            print(f"  {point} seed {seed}: {acc:.2%} in {result.seconds:.0f} s, {result.steps} steps "
                  f"({result.images_per_s:.0f} img/s, {row['gflops']:.1f} GFLOP/s)", flush=True)
    gen_rows = generator_rows(args.gen_profile, args.gen_samples, args.device) if args.generators else []
    table = "\n\n".join(t for t in (render(rows) if rows else "", render_generators(gen_rows)) if t)
    print("\n" + table)
    out = runs.results_root() / "bench"
    # a partial run (only --generators, or only the classifier) keeps the other part of the last record, each part
    # with the machine that measured it
    record = json.loads((out / "bench.json").read_text()) if (out / "bench.json").is_file() else {}
    env = runs.environment(args.device)
    if rows:
        # rows of other budget points measured on this CPU (e.g. an --as-if-peak run) stay beside the new ones
        new_points = {row["point"] for row in rows}
        kept = [old for old in record.get("rows", [])
                if old["point"] not in new_points and old.get("cpu_model") == runs.cpu_model()]
        record.update(rows=kept + rows, environment=env)
    if gen_rows:
        record.update(generator_rows=gen_rows, generator_environment=env)
    runs.write_json(out / "bench.json", record)
    # bench.md holds every row the record keeps (this run's and the kept ones), as the README shows them
    kept_tables = (render(record["rows"]) if record.get("rows") else "",
                   render_generators(record.get("generator_rows", [])))
    runs.write_text(out / "bench.md", "\n\n".join(t for t in kept_tables if t) + "\n")
    return 0


def generator_rows(profile: str, samples: int, device: str) -> list[dict]:
    """Per generator of `profile` (on the profile's dataset): steps, fit seconds (as recorded when trained) and
    samples/s (measured now)."""
    from . import config, generators
    params = config.load_profile(profile)
    pool, _ = data.holdout(data.load(params["dataset"]).train, params["val_size"], seed=0)
    rows = []
    for name in params["generator_names"]:
        gen, _ = generators.fit_on_subset(name, pool, dataset=params["dataset"], n="all", subset_seed=0,
                                          steps=params["gen_steps"][name], seed=params["gen_seed"], device=device)
        generators.sample_pool(gen, min(samples, 500), seed=1)           # warm-up (allocations, oneDNN kernels)
        start = time.perf_counter()
        generators.sample_pool(gen, samples, seed=0)
        rows.append({"generator": name, "profile": profile, "steps": params["gen_steps"][name],
                     "fit_seconds": float(gen.history["seconds"]),
                     "samples_per_s": samples / (time.perf_counter() - start)})
        print(f"  {name}: fit {rows[-1]['fit_seconds']:.0f} s (recorded), {rows[-1]['samples_per_s']:.0f} samples/s",
              flush=True)
    return rows


def render_generators(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["| generator | profile | steps | fit time (s, recorded when trained) | samples/s (measured now) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['generator']} | {r['profile']} | {r['steps']} | {r['fit_seconds']:.0f} | {r['samples_per_s']:,.0f} |"
              for r in rows]
    return "\n".join(lines)


def render(rows: list[dict]) -> str:
    import pandas as pd
    frame = pd.DataFrame(rows)
    lines = ["| budget | steps taken × batch | seeds | test accuracy (%, mean ± 95% CI) | train time (s) | images/s | "
             "GFLOP/s (% of fp32 matmul peak) |", "|---|---|---|---|---|---|---|"]
    for point, g in frame.groupby("point", sort=False):
        acc = metrics.format_ci(*metrics.mean_ci(g["test_accuracy"]))
        t_mean, t_ci = metrics.mean_ci(g["train_seconds"])
        gf, peak = g["gflops"].mean(), g["peak_gflops"].iloc[0]
        lines.append(f"| {point} (≤ {g['budget_s'].iloc[0]:g} s) | {g['steps_taken'].mean():.0f} × {g['batch_size'].iloc[0]} | "
                     f"{len(g)} | {acc} | {t_mean:.0f} (max {g['train_seconds'].max():.0f}) | "
                     f"{g['images_per_s'].mean():.0f} | {gf:.1f} ({gf / peak:.0%} of {peak:.0f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
