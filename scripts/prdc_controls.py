"""Controls for reading recall as "no collapse" (issue 17): real images against real ones (the ceiling), and one
fitted generator whose latents are scaled by s > 1 at sampling — a planted spread that adds no new modes.

PRDC's recall counts the validation images that fall inside some sample's k-nearest-neighbour ball, and a spread-out
sample has larger balls; coverage counts the validation images whose own ball holds a sample (Naeem et al. 2020),
which a spread cannot buy. So if scaling z lifts recall while coverage falls, recall alone cannot tell a generator
that covers more of a class from one that scatters. Validation only (the generator fitted on the pool, as every
curve's; the real control draws from the pool too). Writes results/<profile>/generator_curves/prdc_controls-<label>.csv:

    python scripts/prdc_controls.py --profile paper --family cgan --steps 3000 --label cgan-ms1-aux1 \
        --config mode_seeking=1 aux_class=1 --scales 1 1.25 1.5
"""
from __future__ import annotations

import argparse

import torch
from generator_curves import check_settings, parse_config, scoring_setup

from synthstudy import config, data, generators, quality, runs
from synthstudy.sources import balanced_labels

METRICS = ("fid", "precision", "recall", "density", "coverage")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=config.profiles())
    ap.add_argument("--family", default="cgan", choices=[g for g in generators.available()
                                                         if not generators.is_pretrained(g)])
    ap.add_argument("--steps", type=int, required=True, help="the fit's budget (a cached fit is reused)")
    ap.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="family settings (JSON values)")
    ap.add_argument("--label", help="names the rows (default: the family's)")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.25, 1.5], help="latent scales s (1: as fitted)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    if a.steps < 1:
        raise SystemExit(f"--steps {a.steps}: allowed values are positive integers")
    if any(not s > 0 for s in a.scales):
        raise SystemExit(f"--scales {a.scales}: allowed values are numbers > 0")
    settings = parse_config(a.config)
    check_settings([a.family], settings)
    import pandas as pd
    P, ctx, samples, reference, extractor = scoring_setup(a.profile, a.device)
    real = ctx.pool.take(data.stratified_indices(ctx.pool.labels.numpy(), samples, seed=0))
    rows = [{"sample": "real pool", "latent_scale": float("nan"),
             **quality.sample_quality(extractor, reference, real, per_class=False)}]
    gen, _ = generators.fit_on_subset(a.family, ctx.pool, dataset=P["dataset"], n="all", subset_seed=0,
                                      steps=a.steps, seed=P["gen_seed"], config=settings, device=a.device,
                                      progress=False)
    label = a.label or a.family
    for scale in a.scales:
        rng = torch.Generator().manual_seed(0)          # the same labels and latents at every scale
        labels = balanced_labels(samples, gen.num_classes, rng)
        latents = gen.sample_latents(labels, rng) * scale
        images = torch.cat([gen.decode(latents[i:i + 500], labels[i:i + 500]) for i in range(0, samples, 500)])
        fake = data.ImageSet(images.mul(255).round_().to(torch.uint8), labels)
        rows.append({"sample": f"{label} {a.steps} steps", "latent_scale": scale,
                     **quality.sample_quality(extractor, reference, fake, per_class=False)})
    table = pd.DataFrame(rows)[["sample", "latent_scale", *METRICS]].assign(samples=samples, config=str(settings),
                                                                            machine=runs.cpu_model())
    runs.write_text(runs.results_root() / a.profile / "generator_curves" / f"prdc_controls-{label}.csv",
                    table.to_csv(index=False))
    print(table[["sample", "latent_scale", *METRICS]].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
