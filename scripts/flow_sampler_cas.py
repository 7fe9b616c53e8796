"""The flow's samplers compared on validation CAS (issue 17): guidance weights, solvers and step counts of the
trained flow, and the reflowed flow ("reflow" below: straightened, guidance distilled in, one evaluation per step).

For each sampler: sample a balanced synthetic pool as large as the real one from the profile's whole-pool flow
(the generators notebook's cached model; for `reflow/...` samplers, that model plus `--reflow-steps` of reflow,
cached too), train the profile's CAS classifier on it (the baseline's budget at N = the pool), and score it on the
5,000-image validation split. Seed i pairs a pool sampled with seed i with a classifier trained with seed i, so every
sampler is compared with the first one listed, paired on seeds, in one Holm family, equivalence by TOST against
`--margin` percentage points. The test column is recorded for the reader and never used to choose. FID (domain
feature space, against validation) is recorded beside each. About 20 s per sampler and seed on an H200; 5-10 min on
2 cores (sampling and a 6,000-step classifier). Rows go to results/<profile>/flow_samplers/cas-<tag>.csv (atomic,
one file per invocation, so several processes can share a GPU); `--report` reads them all:

    python scripts/flow_sampler_cas.py --profile paper --samplers heun:4:1.5 reflow/euler:1 --seeds 0 1 2 3 --tag a
    python scripts/flow_sampler_cas.py --profile paper --samplers heun:4:1.5 heun:4:1 heun:4:2 --tag guidance
    python scripts/flow_sampler_cas.py --profile paper --report --reference heun:4:1.5

A sampler is `[reflow/]solver:steps[:guidance][@threshold]` (solvers: euler, heun, midpoint, ab2; guidance defaults
to the flow's, and is 1 for a reflowed model, which has its teacher's guidance in its weights; `@0.9` keeps only
samples the domain classifier, trained on the pool, gives their class a probability >= 0.9: GaFi's sample filter,
`generators.filtered`). Rows are recorded under the sampler's full name, guidance, reflow budget and filter included
(`heun:4:1.5`, `reflow4000x50000/euler:1`, `heun:4:1.5@judge0.9`), the flow's training budget where
`--gen-steps` differs from the profile's (`flow32000/heun:4:1.5`), and `stream/` where `--arm stream` trains the
classifier on fresh samples every batch (steps x batch unique images) instead of the pool, so rows of different
models or arms never share a name. A
filtered sampler's FID is read in its judge's own feature space, which flatters it; its CAS classifier is trained
from scratch and is not the judge. A reflowed model is fitted whole (teacher, then reflow) under its own cache key:
on CPU its teacher is the cached flow's exact twin (same seed), on a GPU only up to the last bits, and each arm is
one fitted generator, so the CI covers pools and classifiers, not generator training.
"""
from __future__ import annotations

import argparse
import copy
import math
import time

from synthstudy import analysis_generators, cells, config, data, generators, metrics, quality, runs, train
from synthstudy.generators.filtered import ClassifierFiltered
from synthstudy.generators.flow import REFLOW_SAMPLER, SOLVERS

OUT_DIR = "flow_samplers"


def parse_sampler(spec: str, reflow_steps: int, reflow_pairs: int) -> tuple[str, dict, float | None]:
    """'reflow/euler:1' -> ('reflow4000x50000/euler:1', the flow config that samples so, None); 'heun:4@0.9' ->
    ('heun:4:1.5@judge0.9', ..., 0.9): the full name under which its rows are recorded, the config, checked by
    the flow itself before any compute, and the filter's threshold (None: no filter)."""
    reflow = spec.startswith("reflow/")
    body, at, filter_text = spec.partition("@")
    threshold = None
    if at:
        try:
            threshold = float(filter_text)
        except ValueError:
            threshold = math.nan
        if not 0 < threshold < 1 or float(f"{threshold:g}") != threshold:     # its name must say it exactly
            raise SystemExit(f"--samplers {spec!r}: the filter threshold after @ must be a probability in (0, 1), "
                             f"written with at most 6 significant digits")
    parts = body.removeprefix("reflow/").split(":")
    ok = 2 <= len(parts) <= 3 and parts[0] in SOLVERS and parts[1].isascii() and parts[1].isdigit() \
        and int(parts[1]) > 0
    default_guidance = 1.0 if reflow else generators.config_options("flow")["guidance"]
    try:
        guidance = float(parts[2]) if len(parts) == 3 else default_guidance
    except ValueError:
        ok = False
    if not ok or not (math.isfinite(guidance) and guidance >= 1.0) or (reflow and guidance != 1.0):
        raise SystemExit(f"--samplers {spec!r}: allowed: [reflow/]solver:steps[:guidance][@threshold] with solver in "
                         f"{', '.join(SOLVERS)}, steps a positive integer, guidance a finite number >= 1 "
                         f"(1 for reflow/), threshold a probability in (0, 1)")
    config = {"solver": parts[0], "sample_steps": int(parts[1]), "guidance": guidance}
    if reflow:
        config.update(reflow_steps=reflow_steps, reflow_pairs=reflow_pairs)
    try:
        generators.create("flow", (1, 28, 28), 10, **config)
    except ValueError as err:
        raise SystemExit(f"--samplers {spec!r}: {err}") from None
    prefix = f"reflow{reflow_steps}x{reflow_pairs}/" if reflow else ""
    suffix = f"@judge{threshold:g}" if threshold is not None else ""
    return f"{prefix}{parts[0]}:{int(parts[1])}:{guidance:g}{suffix}", config, threshold


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=config.profiles())
    ap.add_argument("--samplers", nargs="+", default=["heun:4", "reflow/euler:1"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--reflow-steps", type=int, default=REFLOW_SAMPLER["reflow_steps"],
                    help="student training steps (default: generators.flow.REFLOW_SAMPLER's)")
    ap.add_argument("--reflow-pairs", type=int, default=REFLOW_SAMPLER["reflow_pairs"],
                    help="teacher pairs (default: REFLOW_SAMPLER's)")
    ap.add_argument("--gen-steps", type=int, help="the flow's training steps (default: the profile's shared "
                                                   "gen_steps, not the generators notebook's zoo_overrides; "
                                                   "another budget is named in the rows: flow32000/heun:4:1.5)")
    ap.add_argument("--arm", default="pool", choices=["pool", "stream"],
                    help="what the CAS classifier trains on: a pool as large as the real one (default), or fresh "
                         "samples every batch (rows named [flowSTEPS/]stream/...)")
    ap.add_argument("--tag", default="run", help="this invocation's file: cas-<tag>.csv")
    ap.add_argument("--report", action="store_true", help="only compare the recorded rows")
    ap.add_argument("--reference", default="heun:4:1.5",
                    help="--report: the recorded sampler every other is paired against (its full name)")
    ap.add_argument("--margin", type=float, default=1.0, help="--report: equivalence margin, percentage points")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    if a.reflow_steps < 1 or a.reflow_pairs < 1 or (a.gen_steps is not None and a.gen_steps < 1):
        raise SystemExit("--reflow-steps / --reflow-pairs / --gen-steps: allowed values are positive integers")
    if not a.margin > 0:
        raise SystemExit(f"--margin {a.margin}: allowed: a number of percentage points > 0")
    samplers = {name: (sampler, threshold) for name, sampler, threshold in
                (parse_sampler(spec, a.reflow_steps, a.reflow_pairs) for spec in a.samplers)}
    P = config.load_profile(a.profile)
    gen_steps = a.gen_steps or P["gen_steps"]["flow"]
    if a.arm == "stream":                       # so do rows of the stream arm
        samplers = {f"stream/{name}": spec for name, spec in samplers.items()}
    if gen_steps != P["gen_steps"]["flow"]:     # rows of another flow budget keep a name of their own
        samplers = {f"flow{gen_steps}/{name}": spec for name, spec in samplers.items()}
    if len(set(a.seeds)) != len(a.seeds):
        raise SystemExit(f"--seeds {a.seeds}: allowed: distinct seeds (a repeated seed is the same run twice)")
    if not a.tag.replace("-", "").replace("_", "").isalnum():
        raise SystemExit(f"--tag {a.tag!r}: allowed: letters, digits, - and _")
    out_dir = runs.results_root() / a.profile / OUT_DIR
    if a.report:
        report(out_dir, a.reference, a.margin / 100)
        return
    import pandas as pd
    ctx = cells.context(P["dataset"], P["val_size"])
    n_all = len(ctx.pool)
    steps = cells.profile_steps(P, n_all)
    extractor = quality.domain_extractor(ctx.pool, P["dataset"], steps=P["extractor_steps"], seed=0,
                                         device=a.device, progress=False)
    samples = min(P["quality_samples"], len(ctx.val))
    reference = ctx.val.take(data.stratified_indices(ctx.val.labels.numpy(), samples, seed=0))
    images = n_all if a.arm == "pool" else steps * P["batch_size"]
    print(f"{a.profile}: flow {gen_steps} steps; CAS classifier {steps} steps x {P['batch_size']} on "
          f"{images:,} synthetic images ({a.arm}); device {train.resolve_device(a.device)}", flush=True)
    path = out_dir / f"cas-{a.tag}.csv"
    rows = pd.read_csv(path).to_dict("records") if path.is_file() else []
    done = {(r["sampler"], int(r["seed"])) for r in rows}
    for spec, (sampler, threshold) in samplers.items():
        gen, _ = generators.fit_on_subset("flow", ctx.pool, dataset=P["dataset"], n="all", subset_seed=0,
                                          steps=gen_steps, seed=P["gen_seed"], config=sampler,
                                          device=a.device, progress=False)
        filtered = threshold is not None
        if filtered:    # the judge is its own copy: pool_cas moves it (with the generator) to the device
            gen = ClassifierFiltered(gen, copy.deepcopy(extractor.classifier), threshold)
        try:                                    # the filter may fail to fill a pool: name the argument then
            fid = quality.sample_quality(extractor, reference, generators.sample_pool(gen, samples, seed=0),
                                         per_class=False)["fid"]
            for seed in a.seeds:
                if (spec, seed) in done:
                    continue
                start = time.perf_counter()
                if filtered:
                    gen.reset_counts()          # acceptance and cost of this pool, not a running total
                scored = cells.pool_cas(gen, ctx, P, seed, a.device, arm=a.arm)
                rows.append({"sampler": spec, "seed": seed, "val_accuracy": scored["val_accuracy"],
                             "test_accuracy": scored["test_accuracy"], "fid": fid,
                             "evaluations": gen.evaluations_per_sample(),
                             "acceptance": gen.acceptance if filtered else math.nan,
                             "reflow_steps": sampler.get("reflow_steps", 0),
                             "reflow_pairs": sampler.get("reflow_pairs", 0),
                             "seconds": time.perf_counter() - start, "device": str(train.resolve_device(a.device))})
                runs.write_text(path, pd.DataFrame(rows).to_csv(index=False))      # atomic: resumable after a kill
                print(f"{spec} seed {seed}: validation CAS {scored['val_accuracy']:.2%}, FID {fid:.2f} "
                      f"({rows[-1]['seconds']:.0f} s)", flush=True)
        except ValueError as err:
            raise SystemExit(f"--samplers {spec!r}: {err}") from None


def report(out_dir, reference: str, margin: float) -> None:
    """Every recorded sampler against `reference` on validation CAS: paired on seeds, one Holm family, TOST."""
    try:
        table = analysis_generators.sampler_rows(out_dir)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if table.empty:
        raise SystemExit(f"no rows under {out_dir}: run the samplers first")
    if reference not in set(table["sampler"]):
        raise SystemExit(f"--reference {reference!r}: allowed: a recorded sampler, {sorted(set(table['sampler']))}")
    comparisons = metrics.paired_comparisons(table, "val_accuracy", "sampler", reference, margin=margin)
    means = table.groupby("sampler").agg(val=("val_accuracy", "mean"), test=("test_accuracy", "mean"),
                                         fid=("fid", "first"), evaluations=("evaluations", "mean"),
                                         acceptance=("acceptance", "mean"), seeds=("seed", "count"))
    print(f"validation CAS per sampler (test reported, never chosen on); each against {reference}, paired on seeds, "
          f"Holm over {len(comparisons)}, equivalence margin ±{margin * 100:g} pts:")
    for name, row in means.iterrows():
        vs = comparisons[comparisons["sampler"] == name] if len(comparisons) else comparisons
        text = ("reference" if name == reference else
                metrics.format_difference(vs.iloc[0]) if len(vs) else "no seed shared with the reference")
        # a filtered sampler's FID is read in its judge's own feature space, which flatters it
        filtered = "" if math.isnan(row["acceptance"]) else f" (judge's space), {row['acceptance']:.0%} of draws kept"
        print(f"  {name}: val {row['val']:.2%} (test {row['test']:.2%}), FID {row['fid']:.2f}{filtered}, "
              f"{row['evaluations']:.3g} evaluations/sample, {int(row['seeds'])} seeds; {text}")
    runs.write_text(out_dir / "comparisons.csv", comparisons.to_csv(index=False))
    cas_cells = out_dir.parent / "generators" / "metrics.csv"     # the generators notebook's real arm
    if cas_cells.is_file() and cas_cells.stat().st_size:
        import pandas as pd
        print(analysis_generators.best_sampler_reading(table, pd.read_csv(cas_cells))
              or f"no sampler with >= {analysis_generators.BEST_MIN_SEEDS} seeds to judge against real")


if __name__ == "__main__":
    main()
