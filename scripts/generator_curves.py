"""Validation FID (domain feature space) of each generator family against its training budget (issue 17): where
each family's curve flattens, and where the quick and paper profiles stop (`gen_steps`).

Each budget is its own fit on the whole pool (the families' schedules span their budget, like the bench's), cached
in results/cache/ like every generator, so a rerun only scores. Scored on validation only (FID, KID, precision,
recall, density, coverage of `quality_samples` samples against as many validation images; with `--cas-seeds` the
CAS classifier's test accuracy is recorded beside its validation accuracy, never chosen on). Writes
results/<profile>/generator_curves/curves-<label>.csv (a row per budget and training seed, rewritten after each),
then curves.csv (every family's rows) and figures/generator_fid_curves.png
there; the generators notebook shows them when present. Minutes on a GPU:

    python scripts/generator_curves.py --profile paper --families flow cgan cvae --steps 500 1000 2000 4000 8000

A family's settings can be changed with `--config key=value ...` (JSON values: numbers, true/false, "strings") under
a `--label` that names the variant in the table and the figure; `--cas-seeds` adds validation CAS per budget
(`cells.pool_cas`: a pool as large as the real one, the profile's classifier; test recorded, never chosen on), and
`--gen-seeds` refits with several training seeds (the figure shows each variant's first seed):

    python scripts/generator_curves.py --profile paper --families cgan --steps 3000 --label cgan-mbstd-ms \
        --config minibatch_std=true mode_seeking=1 --cas-seeds 0 1
    python scripts/generator_curves.py --profile paper --families cvae --steps 2000 --gen-seeds 0 1 2 --cas-seeds 0
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

from synthstudy import cells, config, data, generators, quality, runs, train

CURVES_DIR = "generator_curves"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="quick", choices=config.profiles())
    ap.add_argument("--families", nargs="+", default=["flow", "cgan", "cvae"])
    ap.add_argument("--steps", type=int, nargs="+", default=[500, 1000, 2000, 4000, 8000])
    ap.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="family settings (JSON values)")
    ap.add_argument("--label", help="the variant's name in the table (default: the family's)")
    ap.add_argument("--cas-seeds", type=int, nargs="*", default=[], help="validation CAS with these seeds")
    ap.add_argument("--gen-seeds", type=int, nargs="+", help="generator training seeds (default: the profile's)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()
    unknown = [f for f in a.families if f not in generators.available()]
    if unknown:
        raise SystemExit(f"--families {unknown}: allowed values: {', '.join(generators.available())}")
    if any(s < 1 for s in a.steps):
        raise SystemExit(f"--steps {a.steps}: allowed values are positive integers")
    settings = parse_config(a.config)
    if (settings or a.label) and len(a.families) != 1:
        raise SystemExit("--config / --label: allowed with exactly one of --families")
    if settings and not a.label:
        raise SystemExit("--config: allowed only with a --label naming the variant (its rows must not join the "
                         "family's default curve)")
    for name, seeds in (("--cas-seeds", a.cas_seeds), ("--gen-seeds", a.gen_seeds or [])):
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"{name} {seeds}: allowed: distinct seeds")
    check_settings(a.families, settings)
    import pandas as pd
    P, ctx, samples, reference, extractor = scoring_setup(a.profile, a.device)
    out_dir = runs.results_root() / a.profile / CURVES_DIR
    for family in a.families:
        label = a.label or family
        path = out_dir / f"curves-{label}.csv"
        rows = pd.read_csv(path).to_dict("records") if path.is_file() else []
        recorded = {r["config"] for r in rows} | {json.dumps(settings, sort_keys=True)}
        if len(recorded) > 1:
            raise SystemExit(f"--label {label!r}: {path.name} holds rows of other settings ({sorted(recorded)}); "
                             f"allowed: the same --config, or a new --label")
        done = {(int(r["gen_steps"]), int(r["gen_seed"])) for r in rows}
        for steps, gen_seed in [(s, g) for s in sorted(a.steps) for g in a.gen_seeds or [P["gen_seed"]]]:
            if (steps, gen_seed) in done:
                continue
            start = time.perf_counter()
            gen, _ = generators.fit_on_subset(family, ctx.pool, dataset=P["dataset"], n="all", subset_seed=0,
                                              steps=steps, seed=gen_seed, config=settings, device=a.device,
                                              progress=False)
            scores = quality.sample_quality(extractor, reference, generators.sample_pool(gen, samples, seed=0),
                                            per_class=False)
            cas = [cells.pool_cas(gen, ctx, P, seed, a.device) for seed in a.cas_seeds]
            rows.append({"generator": label, "family": family, "config": json.dumps(settings, sort_keys=True),
                         "gen_steps": steps, "gen_seed": gen_seed, "dataset": P["dataset"], "samples": samples,
                         **{k: scores[k] for k in ("fid", "kid", "precision", "recall", "density", "coverage")},
                         "cas_seeds": " ".join(map(str, a.cas_seeds)),
                         "cas_val": " ".join(f"{c['val_accuracy']:.4f}" for c in cas),
                         "cas_test": " ".join(f"{c['test_accuracy']:.4f}" for c in cas),
                         "fit_seconds": gen.history.get("seconds"), "seconds": time.perf_counter() - start,
                         "device": str(train.resolve_device(a.device)), "machine": runs.cpu_model()})
            runs.write_text(path, pd.DataFrame(rows).to_csv(index=False))        # atomic: resumable after a kill
            print(f"{label} {steps} steps, seed {gen_seed}: FID {scores['fid']:.2f}, recall {scores['recall']:.2f}, "
                  f"precision {scores['precision']:.2f}, validation CAS {rows[-1]['cas_val'] or '-'} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    table = pd.concat([pd.read_csv(f) for f in sorted(out_dir.glob("curves-*.csv"))], ignore_index=True)
    runs.write_text(out_dir / "curves.csv", table.to_csv(index=False))
    plot(table, out_dir)


def check_settings(families, settings: dict) -> None:
    """Refuse `--config` settings a family does not take, before any compute."""
    for family in families:
        try:
            generators.create(family, (1, 28, 28), 10, **settings)
        except ValueError as err:
            raise SystemExit(f"--config: {err}") from None


def scoring_setup(profile: str, device: str):
    """What every generator score here is read against: the profile, its data context, the number of samples
    (`quality_samples`, at most the validation size), that many stratified validation images, and the profile's
    domain feature extractor (cached)."""
    P = config.load_profile(profile)
    ctx = cells.context(P["dataset"], P["val_size"])
    samples = min(P["quality_samples"], len(ctx.val))
    reference = ctx.val.take(data.stratified_indices(ctx.val.labels.numpy(), samples, seed=0))
    extractor = quality.domain_extractor(ctx.pool, P["dataset"], steps=P["extractor_steps"], seed=0,
                                         device=device, progress=False)
    return P, ctx, samples, reference, extractor


def parse_config(items: list[str]) -> dict:
    """['mode_seeking=1', 'minibatch_std=true'] -> {'mode_seeking': 1, 'minibatch_std': True}."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--config {item!r}: allowed: KEY=VALUE, the value in JSON (1, 0.5, true, \"text\")")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--config {item!r}: the value is not JSON (strings need quotes: key='\"text\"')") \
                from None
    return out


def plot(table, out_dir) -> None:
    """FID, recall and coverage (and validation CAS, where scored) against the budget per variant, with the quick
    and paper stop points marked."""
    import matplotlib.pyplot as plt

    from synthstudy import analysis_generators, plots
    stops = {name: config.load_profile(name)["gen_steps"] for name in ("quick", "paper")}
    table = table.assign(cas=analysis_generators.cas_means(table) * 100)
    # recall and coverage together: a spread that adds no mode raises recall alone (scripts/prdc_controls.py)
    panels = [("fid", "validation FID (domain features; lower is better)"), ("recall", "recall (PRDC)"),
              ("coverage", "coverage (PRDC)")]
    if table["cas"].notna().any():
        panels.append(("cas", "validation CAS (%; one classifier seed)"))
    plots.style()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4))
    curves = analysis_generators.first_seed(table)
    palette = itertools.cycle(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    colors = {variant: next(palette) for variant in sorted(curves["generator"].unique())}
    for variant, rows in curves.sort_values("gen_steps").groupby("generator"):
        for ax, (value, _) in zip(axes, panels):
            shown = rows[rows[value].notna()]
            if not shown.empty:
                ax.plot(shown["gen_steps"], shown[value], "o-", color=colors[variant], label=variant)
    for family, rows in curves.groupby("family"):          # each family's stops once, in its first variant's colour
        color = colors[sorted(rows["generator"].unique())[0]]
        for ax, (value, _) in zip(axes, panels):
            for name, style in (("quick", ":"), ("paper", "--")):
                if family in stops[name] and rows[value].notna().any():     # only where the family has a curve
                    ax.axvline(stops[name][family], color=color, ls=style, lw=0.8)
    recall_axis = axes[[value for value, _ in panels].index("recall")]
    recall_axis.axhline(analysis_generators.RECALL_TARGET, color="grey", ls="-.", lw=0.8,
                        label=f"issue 17's target ({analysis_generators.RECALL_TARGET})")
    recall_axis.legend(fontsize=8)
    for ax, (_, label) in zip(axes, panels):
        ax.set_xscale("log")
        ax.set_xlabel("training steps (each budget its own fit)")
        ax.set_ylabel(label)
    axes[-1].set_title("vertical lines: dotted quick's stop, dashed paper's", fontsize=9)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plots.save(fig, "generator_fid_curves", out_dir)


if __name__ == "__main__":
    main()
