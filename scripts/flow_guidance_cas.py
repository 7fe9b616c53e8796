"""The flow's classifier-free guidance chosen on validation CAS (issue 17), instead of on FID.

For each guidance weight: sample a balanced synthetic pool as large as the real one from the profile's whole-pool
flow (the generators notebook's cached model; guidance is a sampler setting, so nothing is retrained), train the
profile's CAS classifier on it (the baseline's budget at N = the pool), and score it on the 5,000-image validation
split. The test column is printed for the record and never used to choose. Also prints FID against validation in
the domain feature space, the number the default was chosen on. About a minute per weight and seed on a
GPU; 5-10 min on 2 cores (sampling and a 6,000-step classifier):

    python scripts/flow_guidance_cas.py --profile paper --guidance 1 1.5 2 3 --seeds 0 1 [--device cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time

from synthstudy import cells, config, data, generators, metrics, quality, sources, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=config.profiles())
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    bad = [w for w in a.guidance if not w >= 1.0]
    if bad:
        raise SystemExit(f"--guidance {bad}: allowed values are numbers >= 1 (1 = no guidance)")
    if len(set(a.seeds)) != len(a.seeds):
        raise SystemExit(f"--seeds {a.seeds}: allowed: distinct seeds (a repeated seed is the same run twice)")
    P = config.load_profile(a.profile)
    ctx = cells.context(P["dataset"], P["val_size"])
    n_all = len(ctx.pool)
    steps = train.steps_for_size(n_all, P["batch_size"], P["epochs"], P["min_steps"], P["max_steps"])
    extractor = quality.domain_extractor(ctx.pool, P["dataset"], steps=P["extractor_steps"], seed=0,
                                         device=a.device, progress=False)
    samples = min(P["quality_samples"], len(ctx.val))
    reference = ctx.val.take(data.stratified_indices(ctx.val.labels.numpy(), samples, seed=0))
    print(f"{a.profile}: flow {P['gen_steps']['flow']} steps; CAS classifier {steps} steps x {P['batch_size']} on "
          f"{n_all:,} synthetic images; device {train.resolve_device(a.device)}", flush=True)
    first = None
    for w in a.guidance:
        gen, _ = generators.fit_on_subset("flow", ctx.pool, dataset=P["dataset"], n="all", subset_seed=0,
                                          steps=P["gen_steps"]["flow"], seed=P["gen_seed"], config={"guidance": w},
                                          device=a.device, progress=False)
        fid = quality.sample_quality(extractor, reference, generators.sample_pool(gen, samples, seed=0),
                                     per_class=False)["fid"]
        val, test, seconds = [], [], []
        for seed in a.seeds:
            start = time.perf_counter()
            pool = generators.sample_pool(gen, n_all, seed=seed)
            cfg = train.TrainConfig(steps=steps, batch_size=P["batch_size"], lr=P["lr"], augment=P["augment"],
                                    tta=P["tta"], seed=seed, device=a.device, progress=False)
            scored = train.classifier_cell(sources.ImageSetSource(pool), cfg, P["model"], ctx.splits.image_shape,
                                           ctx.splits.num_classes, ctx.val, ctx.splits.test)
            val.append(scored["val_accuracy"])
            test.append(scored["test_accuracy"])
            seconds.append(time.perf_counter() - start)
        first = first or val        # the first weight listed is the reference the others are paired against
        d = metrics.paired_difference(val, first)
        print(f"guidance {w:g}: validation CAS {statistics.mean(val):.2%} (seeds {', '.join(f'{v:.2%}' for v in val)})"
              f", vs guidance {a.guidance[0]:g} paired {d.mean * 100:+.2f} [{d.ci_low * 100:+.2f}, "
              f"{d.ci_high * 100:+.2f}] pts (p {d.p:.2g}, uncorrected); FID {fid:.2f}; "
              f"test {statistics.mean(test):.2%} (reported, not chosen on); {statistics.mean(seconds):.0f} s per seed",
              flush=True)


if __name__ == "__main__":
    main()
