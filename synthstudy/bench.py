"""`make bench`: accuracy of the real-data classifier on full Fashion-MNIST per training budget, as printed tables.

    python -m synthstudy.bench                       # images budgets, wall-clock points, 3 seeds each (~50 min)
    python -m synthstudy.bench --budgets 256k 512k --points    # only the images table (empty --points: none)
    python -m synthstudy.bench --budgets --points 2min --seeds 0
    python -m synthstudy.bench --generators          # also: each quick-profile generator's fit time and samples/s

Main table, the same on every machine: accuracy reached within a fixed budget of training images seen (default
128k, 256k, 512k and 1M). Each budget is its own run, `budget // batch_size` optimizer steps, with the one-cycle
learning-rate schedule spanning exactly that budget, so a row is "the best this recipe does with that many images",
however fast the machine. A machine that trains at R images/s reaches, in T seconds, the row of the budget R * T.

Second table, for this machine only: wall-clock budget points (2 and 5 min; training stops when the time is spent,
the schedule following elapsed time) with training time, images/s and the achieved GFLOP/s (FLOPs of one training
step counted by torch.utils.flop_counter) as a share of this machine's compute ceiling (`compute_ceiling`): the
largest of the peak the CPU's own description implies (cores x fp32 SIMD lanes x FMA units x 2 x clock, from
lscpu / /proc/cpuinfo), every probe measured in the same run (several GEMM shapes and the model's own
convolutions) and the training rates themselves, so the share can never exceed 100%; the table names which one it
was. Timings are only meaningful on an otherwise idle machine; accuracy at an images budget does not depend on
speed (same seed, same images, same steps), so contention changes none of the main table's numbers.

Both tables train the `cnn` classifier with one fixed recipe (`RECIPE`, passed to TrainConfig explicitly so that
a change of train.py's defaults does not silently change the benchmark) on the 55,000 training images left after
a 5,000-image stratified validation split (`data.holdout`, seed 0, as the study's profiles carve it), and score
both the validation split (what any tuning of `RECIPE` may look at) and the 10,000 test images (the final number;
nothing is selected on it). Results are also written to results/bench/bench.json and bench.md.

The former `--as-if-peak G` rows (wall-clock budgets multiplied by G / a measured "fp32 matmul peak") are retired:
that peak was one 2048-square GEMM, which the classifier itself outran (283-286 GFLOP/s against a "peak" of 221 on
a 2-core AVX-512 EPYC, issue 21), and the rows assumed every machine reaches the same share of its peak. The
images-budget table answers their question, "what would a slower machine reach?", without either assumption.

`--generators` adds one row per generator of a profile (default quick), trained on the whole pool exactly as the
notebooks train it (so the cache under results/cache is shared: a cached model is loaded, a missing one is trained
here): its step budget, the wall time of its fit as recorded when it was trained (`history["seconds"]`, on the
machine that trained it), and the sampling speed measured now (`--gen-samples` balanced samples, batches of 500,
the median of 3 timings after a warm-up).
The flow gets two more rows timed in the same run, each with its speed as a multiple of the first: the sampler
issue 17 measured against (Heun, 8 steps, guidance: `flow.REFERENCE_SAMPLER`) and the reflowed flow (one Euler step,
guidance distilled in: `flow.REFLOW_SAMPLER`; fitted whole here the first time, teacher then reflow, ~4 min on 2
cores, under its own cache key).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import data, metrics, models, runs, sources, train

# The benchmark's recipe, every setting that shapes the result named here rather than inherited from TrainConfig's
# defaults. Flips only: at these short budgets random translations slowed fitting more than they helped (measured:
# 93.45% flip vs 93.42% flip+crop at the same 6,800 steps), and test-time augmentation uses only views training
# showed the model (the mirror image).
RECIPE = {"batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "warmup": 0.15,
          "label_smoothing": 0.1, "augment": "flip", "tta": "flip", "channels_last": True}

# Training budgets in images seen: the main, machine-independent table. 1M is where the recipe's accuracy has
# flattened (design.md: 93.7% at ~490k, 94.1% at ~1.36M images on all 60,000 images).
BUDGETS = ("128k", "256k", "512k", "1M")

# name -> wall-clock budget in s (this machine's table). Training stops when the budget is spent and the LR schedule
# runs on elapsed time; the step limit is only an upper bound.
POINTS = {"2min": 120.0, "5min": 300.0}

# The study's profiles carve 5,000 validation images out of train (configs/*.yaml val_size); tiny datasets such as
# digits (1,348 training images) give a tenth of train instead.
VAL_SIZE = 5000

IMAGE_UNITS = {"k": 1_000, "M": 1_000_000}
BUDGET_HELP = ("a whole number of training images > 0, optionally with the suffix k (x 1,000) or M (x 1,000,000), "
               "e.g. 128k 256k 512k 1M or 300000")


# ---------------------------------------------------------------- budgets in images

def parse_images(text: str) -> int:
    """'128k' -> 128000, '1M' -> 1000000, '1.5M' -> 1500000, '300000' -> 300000; anything else (zero, negative,
    fractional images, other words) raises ValueError naming the allowed forms."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kM]?)\s*", str(text))
    if match:
        number, unit = match.groups()
        scale = IMAGE_UNITS.get(unit, 1)
        whole, _, frac = number.partition(".")
        # exact arithmetic (no floats): 1.5M is 1,500,000 images, 2.5 (images) is not a whole number
        numerator = int(whole + frac) * scale
        denominator = 10 ** len(frac)
        if numerator % denominator == 0 and numerator > 0:
            return numerator // denominator
    raise ValueError(f"{text!r} is not a training budget; allowed: {BUDGET_HELP}")


def format_images(n: int) -> str:
    """128000 -> '128k', 1000000 -> '1M', 1500 -> '1.5k', 999 -> '999' (the inverse of `parse_images`)."""
    for unit, scale in sorted(IMAGE_UNITS.items(), key=lambda item: -item[1]):
        if n >= scale:
            return f"{n / scale:g}{unit}" if n % (scale // 1000 or 1) == 0 else f"{n:,}"
    return str(n)


def _budget_argument(text: str) -> int:
    try:
        return parse_images(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ---------------------------------------------------------------- the compute ceiling

# fp32 lanes per vector register and FMA units per core, by the widest vector extension the CPU lists. AVX-512
# server parts are assumed to have two 512-bit FMA units (Xeon Gold/Platinum; some Silver/Bronze parts and AMD
# Zen 4, which splits 512-bit work into two 256-bit halves, have the throughput of one): the assumption can only
# make the figure larger, so it stays a ceiling. Without FMA, one multiply and one add per lane and cycle count as
# one unit.
VECTOR_UNITS = (("avx512f", "AVX-512", 16, 2), ("avx2", "AVX2", 8, 2), ("avx", "AVX", 8, 1),
                ("asimd", "NEON", 4, 2), ("sse2", "SSE2", 4, 1))


def _fields(text: str) -> dict[str, str]:
    """'Key: value' (lscpu) or 'key\\t: value' (/proc/cpuinfo, first processor only) lines as a dict."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and key.strip() not in found:
            found[key.strip()] = value.strip()
    return found


def cpu_peak(lscpu_text: str, cpuinfo_text: str, threads: int) -> dict | None:
    """The fp32 peak the CPU's description implies for `threads` torch threads, with its factors; None when the
    clock or the vector extensions cannot be read (then only measured numbers make the ceiling).

    peak = cores x fp32 lanes x FMA units x 2 flops per FMA x clock. Cores: the physical cores the threads can
    occupy (hyper-threads share one core's FMA units). Clock: lscpu's "CPU max MHz", else the GHz in the model
    name, else /proc/cpuinfo's "cpu MHz" (a VM often shows only the host's nominal clock; turbo may exceed it,
    which is why measured probes also count toward the ceiling)."""
    lscpu, cpuinfo = _fields(lscpu_text), _fields(cpuinfo_text)
    flags = set((lscpu.get("Flags") or cpuinfo.get("flags") or cpuinfo.get("Features") or "").split())
    vector = next(((name, lanes, units) for flag, name, lanes, units in VECTOR_UNITS if flag in flags), None)
    model_name = lscpu.get("Model name") or cpuinfo.get("model name") or ""
    in_name = re.search(r"@\s*([\d.]+)\s*GHz", model_name)
    clocks = [(lscpu.get("CPU max MHz"), 1e-3, "lscpu CPU max MHz"),
              (in_name.group(1) if in_name else None, 1.0, "GHz in the model name"),
              (cpuinfo.get("cpu MHz"), 1e-3, "/proc/cpuinfo cpu MHz")]
    clock = next(((float(value) * to_ghz, source) for value, to_ghz, source in clocks
                  if value and re.fullmatch(r"[\d.]+", value) and float(value) > 0), None)
    if vector is None or clock is None:
        return None
    per_socket, sockets = lscpu.get("Core(s) per socket", ""), lscpu.get("Socket(s)", "")
    physical = (int(per_socket) * int(sockets) if per_socket.isdigit() and sockets.isdigit()
                else int(cpuinfo["cpu cores"]) if cpuinfo.get("cpu cores", "").isdigit() else threads)
    cores = max(1, min(threads, physical))
    (isa, lanes, fma_units), (ghz, clock_source) = vector, clock
    gflops = cores * lanes * fma_units * 2 * ghz
    return {"gflops": gflops, "cores": cores, "isa": isa, "fp32_lanes": lanes, "fma_units": fma_units, "ghz": ghz,
            "clock_source": clock_source,
            "formula": f"{cores} core{'s' * (cores > 1)} x {lanes} fp32 lanes ({isa}) x {fma_units} FMA units x 2 "
                       f"flops x {ghz:.2f} GHz ({clock_source}) = {gflops:.0f} GFLOP/s"}


def read_cpu_peak(threads: int) -> dict | None:
    """`cpu_peak` of this machine (lscpu and /proc/cpuinfo where they exist: Linux)."""
    try:
        lscpu_text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False,
                                    env={**os.environ, "LC_ALL": "C"}).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu_text = ""
    try:
        with open("/proc/cpuinfo") as handle:
            cpuinfo_text = handle.read()
    except OSError:
        cpuinfo_text = ""
    return cpu_peak(lscpu_text, cpuinfo_text, threads)


def counted_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call of `fn`, counted by torch's flop counter (the counter that sizes the training step)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def best_rate_gflops(fn: Callable[[], object], flops: float, seconds: float = 0.4, max_repeats: int = 40) -> float:
    """Best-of-repeats rate of `fn` after a warm-up: on a VM single calls swing with clock and neighbours (one bench
    run measured a 2048-square GEMM at 47 GFLOP/s, a later run on the same machine at 65), so the fastest call is
    the closest to what the hardware can do."""
    for _ in range(2):
        fn()
    best, start, repeats = float("inf"), time.perf_counter(), 0
    while repeats < 3 or (time.perf_counter() - start < seconds and repeats < max_repeats):
        tick = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tick)
        repeats += 1
    return flops / best / 1e9


def convolution_inputs(model: nn.Module, example: torch.Tensor) -> list[tuple[nn.Conv2d, torch.Size]]:
    """Every Conv2d of `model` with the shape of the input it receives for `example` (one forward pass)."""
    found, hooks = [], []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(lambda m, inputs, _: found.append((m, inputs[0].shape))))
    with torch.no_grad():
        model(example)
    for hook in hooks:
        hook.remove()
    return found


@torch.no_grad()
def probe_gflops(model_name: str, image_shape, num_classes: int, batch_size: int) -> dict[str, float]:
    """Measured fp32 rates (GFLOP/s, current thread count) of several GEMM shapes and of every convolution of the
    benchmarked model at the training batch size (channels_last, as trained), plus one large convolution.

    One square GEMM alone is not a ceiling: on a 2-core AVX-512 EPYC a 2048-square GEMM ran at 221 GFLOP/s while
    the classifier trained at 283-286 (issue 21), as GEMM and convolution go through different kernels (MKL /
    oneDNN)."""
    probes: dict[str, Callable[[], object]] = {}
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        probes[f"GEMM {n}x{n}x{n}"] = lambda a=a, b=b: torch.mm(a, b)
    # a tall GEMM of the shape an im2col convolution of the model's widest layer has
    tall_a, tall_b = torch.randn(batch_size * 49, 128 * 9), torch.randn(128 * 9, 128)
    probes[f"GEMM {batch_size * 49}x{128 * 9}x128"] = lambda: torch.mm(tall_a, tall_b)
    model = models.create_model(model_name, image_shape[0], num_classes, image_shape[-1]).eval()
    model = model.to(memory_format=torch.channels_last)
    example = torch.randn(batch_size, *image_shape).contiguous(memory_format=torch.channels_last)
    large = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    large_input = torch.randn(batch_size, 64, 28, 28).contiguous(memory_format=torch.channels_last)
    for conv, shape in [*convolution_inputs(model, example), (large, large_input.shape)]:
        x = large_input if conv is large else torch.randn(shape).contiguous(memory_format=torch.channels_last)
        label = (f"conv {conv.in_channels}->{conv.out_channels} {conv.kernel_size[0]}x{conv.kernel_size[1]} "
                 f"on {shape[-2]}x{shape[-1]}, batch {shape[0]}")
        probes[label] = lambda conv=conv, x=x: conv(x)
    return {label: best_rate_gflops(fn, counted_flops(fn)) for label, fn in probes.items()}


def compute_ceiling(theoretical: float | None, measured: dict[str, float]) -> tuple[float, str]:
    """The largest of the CPU description's peak (`theoretical`, None if unknown) and every measured rate
    (probes and training runs alike), with the name of the one it was. Any achieved rate in `measured` is thereby
    at most 100% of the ceiling; if a training run is the largest, the probes and the description both fell short
    and the ceiling is only a lower bound on the real one."""
    candidates = {label: value for label, value in measured.items() if value > 0}
    if theoretical:
        candidates["the CPU's description"] = theoretical
    if not candidates:
        raise ValueError("compute_ceiling needs a theoretical peak or at least one measured rate > 0")
    source = max(candidates, key=candidates.get)
    return candidates[source], source


# ---------------------------------------------------------------- training and scoring

def train_flops_per_image(model_name: str, cfg: train.TrainConfig, image_shape, num_classes: int) -> float:
    """FLOPs of one forward+backward pass, per image (counted, not estimated)."""
    model = models.create_model(model_name, image_shape[0], num_classes, image_shape[-1])
    x = torch.randn(cfg.batch_size, *image_shape)
    y = torch.randint(0, num_classes, (cfg.batch_size,))
    return counted_flops(lambda: F.cross_entropy(model(x), y).backward()) / cfg.batch_size


def train_and_score(model_name: str, pool: data.ImageSet, val: data.ImageSet, test: data.ImageSet, image_shape,
                    num_classes: int, cfg: train.TrainConfig) -> dict:
    """One benchmark run: train on `pool`, score validation and test (test only reported, never selected on)."""
    model = models.create_model(model_name, image_shape[0], num_classes, image_shape[-1], seed=cfg.seed)
    result = train.fit(model, sources.ImageSetSource(pool), cfg)
    return {"steps": result.steps, "images_seen": result.steps * cfg.batch_size,
            "val_accuracy": train.evaluate(result.model, val, cfg)["accuracy"],
            "test_accuracy": train.evaluate(result.model, test, cfg)["accuracy"],
            "train_seconds": result.seconds, "images_per_s": result.images_per_s}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", nargs="*", type=_budget_argument, default=[parse_images(b) for b in BUDGETS],
                        metavar="IMAGES", help=f"training budgets in images seen, the main table (default: "
                                               f"{' '.join(BUDGETS)}; none: skip it); each is {BUDGET_HELP}")
    parser.add_argument("--points", nargs="*", default=list(POINTS), choices=list(POINTS),
                        help="wall-clock budget points for this machine's table (default: all; none: skip it)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds per budget (default: 0 1 2)")
    parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "digits"],
                        help="fashion_mnist (the benchmark) | digits (tiny; for tests)")
    parser.add_argument("--model", default="cnn", help="classifier name in synthstudy.models (default: cnn)")
    parser.add_argument("--device", default="cpu", help="cpu (the reference) | auto | cuda")
    parser.add_argument("--generators", action="store_true",
                        help="also time each generator of --gen-profile: fit (as recorded) and sampling (now)")
    parser.add_argument("--gen-profile", default="quick", help="profile whose gen_steps are used (default: quick)")
    parser.add_argument("--gen-samples", type=int, default=2000, help="samples drawn to time sampling (default: 2000)")
    parser.add_argument("--reflow-steps", type=int, help="the reflowed flow's student steps (default: "
                                                         "generators.flow.REFLOW_SAMPLER's)")
    parser.add_argument("--reflow-pairs", type=int,
                        help="the reflowed flow's teacher pairs (default: REFLOW_SAMPLER's)")
    parser.add_argument("--no-classifier", action="store_true", help="skip both classifier tables")
    parser.add_argument("--as-if-peak", help=argparse.SUPPRESS)   # retired; named in the error below
    return parser


def parse_arguments(argv=None) -> argparse.Namespace:
    """Parsed and checked arguments; every refusal exits with status 2 and a message naming the parameter and its
    allowed values, before any data is loaded or anything is trained."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    # argparse reads "-5k" as an unknown option, not as a (negative) budget: name the parameter instead
    negative = [token for token in argv if re.fullmatch(r"-\d[\d.]*[kM]", token)]
    if negative:
        parser.error(f"argument --budgets: {negative[0]!r} is not a training budget; allowed: {BUDGET_HELP}")
    args = parser.parse_args(argv)
    if args.as_if_peak is not None:
        parser.error("--as-if-peak was retired (issue 21): its budgets rested on a GEMM 'peak' the classifier "
                     "outran; the --budgets table (accuracy per training images seen) is the same on every machine")
    if args.gen_samples <= 0:
        parser.error(f"--gen-samples={args.gen_samples} must be a positive integer")
    for name in ("reflow_steps", "reflow_pairs"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)}: allowed values are positive integers")
    short = [b for b in args.budgets if b < RECIPE["batch_size"]]
    if short:
        parser.error(f"--budgets {' '.join(map(str, short))}: less than one batch of {RECIPE['batch_size']} images; "
                     f"allowed: at least {RECIPE['batch_size']} images, {BUDGET_HELP}")
    args.budgets = list(dict.fromkeys(args.budgets))        # a repeated budget would only repeat its runs
    try:
        models.create_model(args.model, 1, 10, 28)           # refuse unknown names before loading anything
        train.TrainConfig(**RECIPE, device=args.device)
    except ValueError as err:
        parser.error(f"--model/--device: {err}")
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    classifier = not args.no_classifier and bool(args.budgets or args.points)
    budget_rows, point_rows, ceiling = [], [], None
    if classifier:
        splits = data.load(args.dataset)
        val_size = min(VAL_SIZE, len(splits.train) // 10)
        pool, val = data.holdout(splits.train, val_size, seed=0)
        threads = train.cpu_threads()
        torch.set_num_threads(threads)
        shape, classes = splits.image_shape, splits.num_classes
        flops_per_image = train_flops_per_image(args.model, train.TrainConfig(**RECIPE, progress=False), shape,
                                                classes)
        common = {"dataset": args.dataset, "model": args.model, "recipe": RECIPE, "train_images": len(pool),
                  "val_images": len(val), "cpu_model": runs.cpu_model(), "threads": threads}
        print(f"{args.dataset}: training on {len(pool):,} images, validation {len(val):,}, test {len(splits.test):,};"
              f" {args.model}, {flops_per_image / 1e6:.1f} MFLOP per training image; {threads} thread(s) of "
              f"{runs.cpu_model()}", flush=True)
        for budget in args.budgets:
            steps = budget // RECIPE["batch_size"]              # whole batches within the budget
            for seed in args.seeds:
                cfg = train.TrainConfig(**RECIPE, steps=steps, seed=seed, device=args.device, progress=False)
                scores = train_and_score(args.model, pool, val, splits.test, shape, classes, cfg)
                row = {"budget": format_images(budget), "budget_images": budget, "seed": seed, **common, **scores,
                       "batch_size": cfg.batch_size, "train_flops": flops_per_image * scores["images_seen"],
                       "gflops": flops_per_image * scores["images_per_s"] / 1e9}
                budget_rows.append(row)
                print(f"  {row['budget']} images, seed {seed}: test {row['test_accuracy']:.2%}, validation "
                      f"{row['val_accuracy']:.2%} ({steps} steps in {row['train_seconds']:.0f} s)", flush=True)
        for name in args.points:
            for seed in args.seeds:
                cfg = train.TrainConfig(**RECIPE, steps=10**7, max_seconds=POINTS[name], seed=seed,
                                        device=args.device, progress=False)
                scores = train_and_score(args.model, pool, val, splits.test, shape, classes, cfg)
                row = {"point": name, "budget_s": POINTS[name], "seed": seed, **common, **scores,
                       "batch_size": cfg.batch_size, "gflops": flops_per_image * scores["images_per_s"] / 1e9}
                point_rows.append(row)
                print(f"  {name} seed {seed}: test {row['test_accuracy']:.2%} in {row['train_seconds']:.0f} s, "
                      f"{row['steps']} steps ({row['images_per_s']:.0f} img/s, {row['gflops']:.1f} GFLOP/s)",
                      flush=True)
        # probed after training, on the same threads: the probes take seconds, and the ceiling takes in every
        # training rate of this run too
        peak = read_cpu_peak(threads)
        probes = probe_gflops(args.model, shape, classes, RECIPE["batch_size"])
        trained = {f"training ({row.get('point') or row['budget']}, seed {row['seed']})": row["gflops"]
                   for row in budget_rows + point_rows}
        value, source = compute_ceiling(peak and peak["gflops"], {**probes, **trained})
        ceiling = {"gflops": value, "source": source, "cpu_peak": peak, "probes": probes, "threads": threads,
                   "cpu_model": runs.cpu_model()}
        for row in budget_rows + point_rows:
            row.update(ceiling_gflops=value, ceiling_source=source)
        print(f"ceiling on {threads} thread(s): {describe_ceiling(ceiling)}", flush=True)
    reflow = {k: v for k, v in (("reflow_steps", args.reflow_steps), ("reflow_pairs", args.reflow_pairs)) if v}
    gen_rows = generator_rows(args.gen_profile, args.gen_samples, args.device, reflow) if args.generators else []
    record = merge_record(budget_rows, point_rows, ceiling, gen_rows, args)
    print("\n" + render_record(record))
    out = runs.results_root() / "bench"
    runs.write_json(out / "bench.json", record)
    runs.write_text(out / "bench.md", render_record(record) + "\n")     # every row the record keeps
    return 0


def merge_record(budget_rows: list[dict], point_rows: list[dict], ceiling: dict | None, gen_rows: list[dict],
                 args: argparse.Namespace) -> dict:
    """This run's rows added to the last record: a partial run (one budget, only --generators) keeps the other
    rows, each with the machine that measured it. Kept: images-budget rows of other budgets with the same dataset,
    model and recipe (they hold on any machine); wall-clock rows of other points from the same CPU, dataset and
    model; retired --as-if-peak rows and rows of older formats (no ceiling) are dropped."""
    path = runs.results_root() / "bench" / "bench.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    env = runs.environment(args.device)
    same_setup = {"dataset": args.dataset, "model": args.model}
    if budget_rows:
        new = {row["budget_images"] for row in budget_rows}
        kept = [old for old in record.get("budget_rows", []) if old["budget_images"] not in new
                and old.get("recipe") == RECIPE and all(old.get(k) == v for k, v in same_setup.items())]
        record.update(budget_rows=sorted(kept + budget_rows, key=lambda row: row["budget_images"]),
                      budget_environment=env)
    if point_rows:
        new = {row["point"] for row in point_rows}
        kept = [old for old in record.get("rows", []) if old.get("point") in POINTS and old["point"] not in new
                and "ceiling_gflops" in old and old.get("cpu_model") == runs.cpu_model()
                and all(old.get(k) == v for k, v in same_setup.items())]
        record.update(rows=kept + point_rows, environment=env)
    elif "rows" in record:
        record["rows"] = [old for old in record["rows"] if "ceiling_gflops" in old and old.get("point") in POINTS]
    if point_rows and ceiling:
        record["ceiling"] = ceiling          # the one the wall-clock table's throughput column is a share of
    if gen_rows:
        record.update(generator_rows=gen_rows, generator_environment=env)
    return record


def generator_rows(profile: str, samples: int, device: str, reflow: dict | None = None) -> list[dict]:
    """Per generator of `profile` (on the profile's dataset): steps, fit seconds (as recorded when trained) and
    samples/s (measured now). For the flow, two more rows timed in the same run: the sampler issue 17 measured
    against (`flow.REFERENCE_SAMPLER`) and the reflowed flow (`flow.REFLOW_SAMPLER`, with `reflow` overriding its
    settings), each with its speed as a multiple of the reference's."""
    from . import config, generators
    from .generators import flow
    params = config.load_profile(profile)
    pool, _ = data.holdout(data.load(params["dataset"]).train, params["val_size"], seed=0)
    rows = []

    def add_row(name: str, label: str, settings: dict) -> dict:
        gen, _ = generators.fit_on_subset(name, pool, dataset=params["dataset"], n="all", subset_seed=0,
                                          steps=params["gen_steps"][name], seed=params["gen_seed"], config=settings,
                                          device=device)
        generators.sample_pool(gen, min(samples, 500), seed=1)           # warm-up (allocations, oneDNN kernels)
        # the median of 3 timings: one timing of the reflowed flow once read 3.7x where two reruns read 5.9x
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            generators.sample_pool(gen, samples, seed=0)
            seconds.append(time.perf_counter() - start)
        rows.append({"generator": label, "profile": profile, "steps": params["gen_steps"][name],
                     "fit_seconds": float(gen.history["seconds"]),
                     "samples_per_s": samples / sorted(seconds)[1]})
        if hasattr(gen, "evaluations_per_sample"):
            rows[-1]["evaluations"] = gen.evaluations_per_sample()
        print(f"  {label}: fit {rows[-1]['fit_seconds']:.0f} s (recorded), {rows[-1]['samples_per_s']:.0f} "
              f"samples/s", flush=True)
        return rows[-1]

    for name in params["generator_names"]:
        add_row(name, name, {})
        if name == "flow":
            reference = add_row(name, f"flow, {flow.describe_sampler(flow.REFERENCE_SAMPLER)}",
                                flow.REFERENCE_SAMPLER)
            fast = {**flow.REFLOW_SAMPLER, **(reflow or {})}
            add_row(name, f"flow reflowed, {flow.describe_sampler(fast)}", fast)
            for timed in rows[-3:]:
                timed["vs_reference"] = timed["samples_per_s"] / reference["samples_per_s"]
    return rows


# ---------------------------------------------------------------- tables

def render_budgets(rows: list[dict]) -> str:
    """The main table: one row per images budget, accuracy as mean ± 95% CI over seeds."""
    if not rows:
        return ""
    import pandas as pd
    frame = pd.DataFrame(rows)
    lines = [("| training budget (images seen) | steps × batch | training TFLOP | seeds | "
              "test accuracy (%, mean ± 95% CI) | validation accuracy (%, mean ± 95% CI) |"),
             "|---|---|---|---|---|---|"]
    for budget, g in frame.groupby("budget_images", sort=True):
        lines.append(f"| {format_images(int(budget))} | {g['steps'].iloc[0]} × {g['batch_size'].iloc[0]} | "
                     f"{g['train_flops'].mean() / 1e12:.3g} | {len(g)} | "
                     f"{metrics.format_ci(*metrics.mean_ci(g['test_accuracy']))} | "
                     f"{metrics.format_ci(*metrics.mean_ci(g['val_accuracy']))} |")
    return "\n".join(lines)


def render(rows: list[dict]) -> str:
    """This machine's table: one row per wall-clock point, throughput against the run's ceiling (never above it)."""
    rows = [row for row in rows if "ceiling_gflops" in row]        # older formats carry no ceiling
    if not rows:
        return ""
    import pandas as pd
    frame = pd.DataFrame(rows)
    lines = [("| budget | steps taken × batch | seeds | test accuracy (%, mean ± 95% CI) | validation accuracy (%) | "
              "train time (s) | images/s | GFLOP/s (% of ceiling) |"), "|---|---|---|---|---|---|---|---|"]
    for point, g in frame.groupby("point", sort=False):
        t_mean, _ = metrics.mean_ci(g["train_seconds"])
        gf, ceiling = g["gflops"].mean(), g["ceiling_gflops"].max()
        lines.append(f"| {point} (≤ {g['budget_s'].iloc[0]:g} s) | {g['steps'].mean():.0f} × {g['batch_size'].iloc[0]} "
                     f"| {len(g)} | {metrics.format_ci(*metrics.mean_ci(g['test_accuracy']))} | "
                     f"{metrics.format_ci(*metrics.mean_ci(g['val_accuracy']))} | {t_mean:.0f} "
                     f"(max {g['train_seconds'].max():.0f}) | {g['images_per_s'].mean():.0f} | "
                     f"{gf:.1f} ({gf / ceiling:.0%} of {ceiling:.0f}) |")
    return "\n".join(lines)


def describe_ceiling(ceiling: dict) -> str:
    """One sentence: the ceiling, which number it was, and the other candidates."""
    peak, probes = ceiling.get("cpu_peak"), ceiling.get("probes", {})
    best_probe = max(probes, key=probes.get) if probes else None
    parts = [f"{ceiling['gflops']:.0f} GFLOP/s = {ceiling['source']}"]
    parts.append(f"CPU description: {peak['formula']}" if peak else "CPU description: unreadable (no clock or "
                                                                     "vector flags), not counted")
    if best_probe:
        parts.append(f"best of {len(probes)} GEMM/convolution probes: {best_probe}, {probes[best_probe]:.0f} GFLOP/s")
    return "; ".join(parts)


def render_generators(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["| generator | profile | steps | fit time (s, recorded when trained) | samples/s (measured now) | "
             "× the issue-17 reference sampler (same run) | network evaluations per sample |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['vs_reference']:.1f}×" if "vs_reference" in r else ""
        lines.append(f"| {r['generator']} | {r['profile']} | {r['steps']} | {r['fit_seconds']:.0f} | "
                     f"{r['samples_per_s']:,.0f} | {ratio} | {r.get('evaluations', '')} |")
    return "\n".join(lines)


def render_record(record: dict) -> str:
    """Every table of a bench record, main table first, as printed and as written to bench.md."""
    wall_clock = render(record.get("rows", []))
    if wall_clock and record.get("ceiling"):
        wall_clock += f"\n\nCeiling ({record['ceiling']['threads']} thread(s)): {describe_ceiling(record['ceiling'])}."
    parts = (render_budgets(record.get("budget_rows", [])), wall_clock,
             render_generators(record.get("generator_rows", [])))
    return "\n\n".join(part for part in parts if part)


if __name__ == "__main__":
    sys.exit(main())
