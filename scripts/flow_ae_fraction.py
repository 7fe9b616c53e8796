"""Re-check the flow's `ae_fraction` default on validation (issue 14: it had been chosen citing test CAS).

Fits the quick profile's whole-pool flow (2,400 steps, seed 0) at several `ae_fraction` values and scores 5,000
samples against 5,000 validation images in the domain feature space (FID, KID, precision / recall / density /
coverage). The test split is never loaded into the comparison. Usage:

    python scripts/flow_ae_fraction.py 0.4 0.6 0.8
"""
import sys
import time

from synthstudy import cells, config, data, generators, quality

P = config.load_profile("quick")
ctx = cells.context(P["dataset"], P["val_size"])
extractor = quality.domain_extractor(ctx.pool, P["dataset"], steps=P["extractor_steps"], seed=0, progress=False)
reference = ctx.val.take(data.stratified_indices(ctx.val.labels.numpy(), P["quality_samples"], seed=0))
for ae_fraction in [float(a) for a in sys.argv[1:]]:
    start = time.perf_counter()
    gen, _ = generators.fit_on_subset("flow", ctx.pool, dataset=P["dataset"], n="all", subset_seed=0,
                                      steps=P["gen_steps"]["flow"], seed=P["gen_seed"],
                                      config={"ae_fraction": ae_fraction}, progress=False)
    fit = time.perf_counter() - start
    fake = generators.sample_pool(gen, P["quality_samples"], seed=0)
    s = quality.sample_quality(extractor, reference, fake, per_class=False)
    print(f"ae_fraction {ae_fraction}: FID {s['fid']:.2f} KID {s['kid']:.3f} precision {s['precision']:.2f} "
          f"recall {s['recall']:.2f} density {s['density']:.2f} coverage {s['coverage']:.2f} "
          f"(fit or load {fit:.0f} s)", flush=True)
