"""Validation FID (domain feature space) of each generator family against its training budget (issue 17): where
each family's curve flattens, and where the quick and paper profiles stop (`gen_steps`).

Each budget is its own fit on the whole pool (the families' schedules span their budget, like the bench's), cached
in results/cache/ like every generator, so a rerun only scores. Scored on validation only (FID, KID, precision,
recall, density, coverage of `quality_samples` samples against as many validation images); the test split is never
loaded. Writes results/<profile>/generator_curves/curves.csv (a row per family and budget, rewritten after each)
and figures/generator_fid_curves.png there; the generators notebook shows them when present. Minutes on a GPU:

    python scripts/generator_curves.py --profile paper --families flow cgan cvae --steps 500 1000 2000 4000 8000
"""
from __future__ import annotations

import argparse
import time

from synthstudy import cells, config, data, generators, quality, runs, train

CURVES_DIR = "generator_curves"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=config.profiles())
    ap.add_argument("--families", nargs="+", default=["flow", "cgan", "cvae"])
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 1000, 2000, 4000, 8000])
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    unknown = [f for f in a.families if f not in generators.available()]
    if unknown:
        raise SystemExit(f"--families {unknown}: allowed values: {', '.join(generators.available())}")
    if any(s < 1 for s in a.steps):
        raise SystemExit(f"--steps {a.steps}: allowed values are positive integers")
    import pandas as pd
    P = config.load_profile(a.profile)
    ctx = cells.context(P["dataset"], P["val_size"])
    samples = min(P["quality_samples"], len(ctx.val))
    reference = ctx.val.take(data.stratified_indices(ctx.val.labels.numpy(), samples, seed=0))
    extractor = quality.domain_extractor(ctx.pool, P["dataset"], steps=P["extractor_steps"], seed=0,
                                         device=a.device, progress=False)
    out_dir = runs.results_root() / a.profile / CURVES_DIR
    path = out_dir / "curves.csv"
    rows = pd.read_csv(path).to_dict("records") if path.is_file() else []
    done = {(r["generator"], int(r["gen_steps"])) for r in rows}
    for family in a.families:
        for steps in sorted(a.steps):
            if (family, steps) in done:
                continue
            start = time.perf_counter()
            gen, _ = generators.fit_on_subset(family, ctx.pool, dataset=P["dataset"], n="all", subset_seed=0,
                                              steps=steps, seed=P["gen_seed"], device=a.device, progress=False)
            scores = quality.sample_quality(extractor, reference, generators.sample_pool(gen, samples, seed=0),
                                            per_class=False)
            rows.append({"generator": family, "gen_steps": steps, "dataset": P["dataset"], "samples": samples,
                         **{k: scores[k] for k in ("fid", "kid", "precision", "recall", "density", "coverage")},
                         "fit_seconds": gen.history.get("seconds"), "seconds": time.perf_counter() - start,
                         "device": str(train.resolve_device(a.device)), "machine": runs.cpu_model()})
            runs.write_text(path, pd.DataFrame(rows).to_csv(index=False))        # atomic: resumable after a kill
            print(f"{family} {steps} steps: FID {scores['fid']:.2f}, recall {scores['recall']:.2f}, "
                  f"precision {scores['precision']:.2f} ({time.perf_counter() - start:.0f} s)", flush=True)
    plot(pd.DataFrame(rows), out_dir)


def plot(table, out_dir) -> None:
    """FID and recall against the budget per family, with the quick and paper stop points marked."""
    import matplotlib.pyplot as plt

    from synthstudy import plots
    stops = {name: config.load_profile(name)["gen_steps"] for name in ("quick", "paper")}
    plots.style()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for family, rows in table.sort_values("gen_steps").groupby("generator"):
        for ax, value in zip(axes, ("fid", "recall")):
            line, = ax.plot(rows["gen_steps"], rows[value], "o-", label=family)
            for name, style in (("quick", ":"), ("paper", "--")):
                if family in stops[name]:
                    ax.axvline(stops[name][family], color=line.get_color(), ls=style, lw=0.8)
    for ax, label in zip(axes, ("validation FID (domain features; lower is better)", "recall (PRDC)")):
        ax.set_xscale("log")
        ax.set_xlabel("training steps (each budget its own fit; dotted: quick's stop, dashed: paper's)")
        ax.set_ylabel(label)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plots.save(fig, "generator_fid_curves", out_dir)


if __name__ == "__main__":
    main()
