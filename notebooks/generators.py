# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Generators: how good is each synthetic data source?
#
# synthstudy trains its own class-conditional generators on the real training pool (the train split minus the
# validation holdout; the test split is never shown to them) and asks how well each one stands in for the data.
# The zoo, from cheap to strong: a per-class Gaussian in PCA space, a conditional VAE, a conditional GAN (hinge
# loss, spectral norm, projection discriminator, DiffAugment, EMA) and a latent flow-matching model with a
# deterministic ODE sampler and classifier-free guidance.
#
# Two kinds of scores:
# - **distribution scores** in the feature space of a *domain* classifier (trained on the real pool, frozen,
#   cached): FID and KID (torchmetrics' formulas), precision / recall / density / coverage (the `prdc`
#   package), overall and per class, against the validation holdout;
# - **CAS**, the headline: the study's classifier trained *only* on generated images, scored on the
#   real test split, with the same architecture, step budget and augmentation as the real-data arm trained here
#   on the real pool. The ratio CAS / real accuracy says how much of the real data's value a generator keeps.
#
# Generators are cached by a hash of (dataset, subset, config, steps, seed): the later notebooks (scaling,
# multiview, audits) load these same models instead of retraining. A family in `zoo_overrides` is trained (or
# sampled) otherwise here than `gen_steps` and its defaults, which the later notebooks keep: the paper profile's
# flow trains 16x longer with guidance 1, the setting that scored best on validation CAS, and its cGAN 16x longer,
# the largest budget fitted (its CAS still rising there).

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/generators; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 | imagefolder (cifar10: allow_download or files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
data_root: str = ""               # dataset imagefolder only: a folder per class; empty means $SYNTHSTUDY_IMAGEFOLDER
image_size: int = 64              # dataset imagefolder only: images resized to this many pixels a side
pretrained_path: str = ""         # a pretrained generator's local weights folder (README: pretrained generators)
allow_cpu_pretrained: bool = False   # consent to run a GPU-sized pretrained generator on the CPU (slow)
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # CAS: one classifier per seed and arm; at least 3 for a 95% CI
val_size: int = 5000              # images held out of the pool: the real reference for FID/PRDC
generator_names: list = ["pca_gaussian", "flow"]   # families to train: the baseline family and the best learned
                                  # one (CAS); paper: also cvae and cgan
cas_generators: list = ["flow"]   # families scored by CAS (a 2,500-step classifier per seed each, ~1.5 min on 2
                                  # cores): the best learned one; the scaling notebook has PCA's; paper: all
cas_arm: str = "pool"             # pool: a fixed synthetic set as large as the real pool, drawn per seed (CAS as
                                  # Ravuri & Vinyals define it; the flow's 55,000 take ~25 s) | stream: fresh samples
                                  # every step (320,000 per cell at N=all, ~2.4 min of flow sampling on 2 cores)
gen_steps: dict = {"pca_gaussian": 1, "cvae": 800, "cgan": 1200, "flow": 2400}   # optimizer steps per family
gen_seed: int = 0                 # seed of every generator fit (shared with the other notebooks: same cache)
zoo_overrides: dict = {}          # per family, this notebook's whole-pool fit otherwise than gen_steps and the
                                  # defaults (scaling and audits keep those): {"flow": {"steps": 64000,
                                  # "guidance": 1.0}}; paper sets the flow's and the cGAN's (validation CAS)
quality_samples: int = 5000       # generated images scored against the val_size real ones (FID is size-biased)
extractor_steps: int = 3000       # steps of the frozen domain classifier that defines the feature space (at plateau)
model: str = "cnn"                # CAS classifier, the same for the real arm (synthstudy.models)
epochs: float = 20.0              # the baseline's budget rule (epochs x N / batch steps, in [min_steps, max_steps]):
min_steps: int = 300              # CAS trains on the whole pool, so at max_steps: exactly the baseline's cell
max_steps: int = 2500             # there, and the real arm is the baseline's record (reused, not retrained)
equivalence_margin: float = 0.01  # CAS within this of real (accuracy fraction) can be called equivalent (TOST)
batch_size: int = 128             # images per step
lr: float = 0.1                   # peak one-cycle learning rate
augment: str = "flip_crop"        # the baseline's augmentation, for both arms
tta: str = "flip_shift"           # test-time views: none | flip | flip_shift
progress: bool = True             # tqdm progress bars

# %%
import functools

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import Image, Markdown, display

from synthstudy import analysis_scaling, cells, config, metrics, plots, quality, runs, train
from synthstudy.analysis_generators import (
    best_sampler_reading,
    cas_reference,
    collapse_finding,
    collapse_readings,
    family_shares,
    format_share_interval,
    sampler_rows,
    variant_comparisons,
    variant_findings,
)
from synthstudy.analysis_generators import findings as curve_findings

P = config.from_namespace(config.GeneratorsParams, globals())
ctx = cells.context(P.dataset, P.val_size, P.allow_download, P.data_root, P.image_size)
splits, pool, val = ctx.splits, ctx.pool, ctx.val
run = runs.Run("generators", P.profile, P.model_dump(), device=str(train.resolve_device(P.device)))
print(f"{splits.name}: generators train on {len(pool)} pool images; {len(val)} held out as the quality "
      f"reference; results in {run.dir}")


# %% [markdown]
# ## Train (or load) the zoo and score its samples
# One grid cell per generator: fit (cached), draw `quality_samples` balanced samples, time the sampling, and
# score them against the held-out real images in the domain feature space.

# %%
extractor = quality.domain_extractor(pool, P.dataset, steps=P.extractor_steps, seed=0, model=P.model,
                                     augment=P.augment, batch_size=P.batch_size, device=P.device,
                                     progress=P.progress)
quality_keys = [cells.quality_key(P, g, extractor.key) for g in P.generator_names]
quality_records = run.grid(quality_keys, functools.partial(cells.generator_quality, **cells.runtime(P)),
                           progress=P.progress,
                           describe=lambda k, m: f"{k['generator']}: FID {m['fid']:.2f}, precision "
                                                 f"{m['precision']:.2f}, recall {m['recall']:.2f}")
quality_table = run.write_table([runs.flatten(r) for r in quality_records], name="quality.csv")

# %% [markdown]
# ## Training curves
# Each family logs its own loss (GAN: discriminator and generator hinge losses; VAE: negative ELBO; flow: the
# autoencoder's reconstruction error, then the velocity regression error). PCA has no gradient steps.

# %%
curves = [(r["key"]["generator"], name, values) for r in quality_records
          for name, values in r["metrics"]["history"].items() if values and isinstance(values[0], list)]
fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(3.4 * max(1, len(curves)), 2.8), squeeze=False)
for ax, (gen_name, curve, values) in zip(axes[0], curves):
    ax.plot([v[0] for v in values], [v[1] for v in values])
    ax.set_title(f"{gen_name}: {curve}", fontsize=9)
    ax.set_xlabel("step")
plots.save(fig, "generators_training_curves", run.dir)

# %% [markdown]
# ## Faster flow sampling: the reflowed flow
# The flow samples with 4 Heun steps and classifier-free guidance: 16 network evaluations per image. Reflow
# (`reflow_steps` in `generators.flow`) straightens its paths and distils the guidance in, so one Euler step does:
# one evaluation. `make bench --generators` times it against the sampler issue 17 measured from, in one run;
# `scripts/flow_sampler_cas.py` asks whether it costs CAS (validation, paired on seeds, TOST at its `margin`).
# Where that has run for this profile, its comparisons show here.

# %%
samplers = runs.results_root() / P.profile / "flow_samplers" / "comparisons.csv"
if samplers.is_file():
    display(pd.read_csv(samplers)[["sampler", "reference", "pairs", "difference", "ci_low", "ci_high", "p_holm",
                                   "margin", "p_equivalence_holm", "verdict"]])
else:
    print(f"no sampler comparison for {P.profile!r} yet: python scripts/flow_sampler_cas.py --profile {P.profile} "
          f"--samplers heun:4 reflow/euler:1 (minutes on a GPU), then --report")   # rows: full sampler names

# %% [markdown]
# ## CAS: a classifier trained only on generated images, scored on the real test split
# The real arm trains the same classifier, with the same budget (the baseline's rule at N = the whole pool) and
# augmentation, on the real pool — it is the baseline's cell, reused; the synthetic arms train on generated images
# with balanced labels (`cells.classifier`): with `cas_arm` "pool" (the default) a fixed set as large as the real
# pool, drawn once per seed — CAS as Ravuri & Vinyals define it, generated data standing in for the dataset — or
# with "stream" fresh samples every step (the scaling notebook's stream arm at this N; ~6x the sampling).
# The baseline's budget check at this N (the real arm at twice the budget, on validation) is reused too.

# %%
n_all = len(pool)
cas_keys = cells.cas_keys(P)
cas_records = run.grid(cas_keys, cells.reuse_or_run(P.profile, ("baseline", "scaling"), **cells.runtime(P)),
                       progress=P.progress, describe=lambda k, m: f"{k['generator']} {k['arm']} seed={k['seed']}: "
                                                                  f"test {m['test_accuracy']:.2%}")
cas_table = run.write_table([runs.flatten(r) for r in cas_records], name="metrics.csv")
cas_table["arm"] = cas_table["generator"].where(cas_table["arm"] != "real", "real")
checks = analysis_scaling.budget_checks(cas_table, [n_all])
cas_table = analysis_scaling.main_cells(cas_table)
display(Markdown("\n".join(f"- Budget check: {v}" for v in checks["verdict"])))

# %% [markdown]
# ## The table: CAS (mean ± 95% CI over seeds), its ratio to real data, the paired verdict, distribution scores
# `vs real (paired)`: per-seed CAS minus the real arm's accuracy (same seed: same initialisation and batch order),
# 95% CI, Holm-corrected over the families; "equivalent" only within ±`equivalence_margin` by TOST.

# %%
summary = metrics.summarize(cas_table, by="arm", value="test_accuracy")
real_mean = float(summary.loc[summary["arm"] == "real", "mean"].iloc[0])
summary["ratio"] = summary["mean"] / real_mean
compared = metrics.paired_comparisons(cas_table, value="test_accuracy", arm="arm", reference="real",
                                      margin=P.equivalence_margin).set_index("arm")
summary["vs real (paired)"] = [("—" if a == "real" else metrics.format_difference(compared.loc[a]))
                               for a in summary["arm"]]
order = ["real", *P.generator_names]                 # every family's quality row; CAS where it was run
table = pd.DataFrame({"arm": order}).merge(summary, on="arm", how="left").merge(
    quality_table.rename(columns={"generator": "arm"}), on="arm", how="left")
table["vs real (paired)"] = table["vs real (paired)"].fillna("not run (cas_generators)")
table["test accuracy (%)"] = [metrics.format_ci(m, h) if m == m else "—" for m, h in zip(table["mean"], table["ci"])]
table["samples/s"] = table["samples_per_s"].round(0)
table["train s"] = table["train_seconds"].round(0)


def recorded_device(column):
    """Where each family's fit or sampling ran: a record reused from an earlier run may come from another machine
    (a GPU's samples/s beside a CPU's is not a comparison); "not recorded" for records older than the column."""
    values = table[column] if column in table else pd.Series(None, index=table.index, dtype=object)
    return values.fillna("not recorded").where(table["arm"] != "real", "")


table["fit on"], table["sampled on"] = recorded_device("fit_device"), recorded_device("sample_device")
pool_bytes = pool.images.numel() * pool.images.element_size()
table["storage vs data"] = table["parameter_bytes"] / pool_bytes
columns = ["arm", "test accuracy (%)", "ratio", "vs real (paired)", "fid", "kid", "precision", "recall", "density",
           "coverage", "train s", "fit on", "samples/s", "sampled on", "parameter_bytes", "storage vs data"]
runs.write_text(run.dir / "summary.csv", table[columns].to_csv(index=False))
display(table[columns].round(3))
print(f"real pool: {len(pool)} images, {pool_bytes / 1e6:.1f} MB as uint8")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
synthetic = table[table["arm"] != "real"]
ax1.bar(synthetic["arm"], synthetic["mean"] * 100, yerr=synthetic["ci"] * 100, capsize=4, color="tab:orange")
ax1.axhline(real_mean * 100, color="black", ls="--", label=f"real pool ({real_mean:.1%})")
ax1.set_ylabel("test accuracy (%)")
ax1.set_title("CAS: train on generated, test on real")
ax1.legend(loc="lower right")
ax2.bar(synthetic["arm"], synthetic["fid"], color="tab:blue")
ax2.set_ylabel("FID (domain features, lower is better)")
ax2.set_title("distance to held-out real images")
plots.save(fig, "generators_cas_fid", run.dir)

# %% [markdown]
# ## Trained to the plateau? Validation FID and CAS against the training budget
# Losses do not say when a generator stops improving. `scripts/generator_curves.py` fits each family at several
# budgets (each its own fit, cached like every generator) and scores FID and recall on validation, and with
# `--cas-seeds` validation CAS; where it has run for this profile its table, figure and reading show here, with this
# profile's and the other's stop points (`gen_steps`). The reading compares CAS at this profile's stop (the seeds
# above) with CAS at the largest budget, against a t bound from the seeds' spread (`analysis_generators`). The
# curves use each family's default settings, so a family `zoo_overrides` samples otherwise (paper's flow: guidance
# 1) gets no stop reading here; its evidence is the flow sampler table above and the reading below. A variant
# (`--config`, e.g. the cGAN with mode seeking) scored with CAS beside its family's defaults at one budget is read
# against them, paired on classifier seeds, Holm over the variants, "equivalent" only within ±`equivalence_margin`.
# The cGAN's collapse (issue 17) is read from recall and coverage together: recall ≥ 0.3 with coverage at least the
# defaults' at the same budget, since a spread that adds no mode raises recall alone (scripts/prdc_controls.py).

# %%
curves = runs.results_root() / P.profile / "generator_curves"
if (curves / "curves.csv").is_file():
    curve_table = pd.read_csv(curves / "curves.csv")
    display(curve_table[["generator", "gen_steps", "fid", "recall", "precision", "cas_val", "fit_seconds",
                         "device"]])
    display(Image(filename=str(curves / "figures" / "generator_fid_curves.png")))
    # the curves fit and sample each family with its defaults: a family this run sets otherwise (zoo_overrides
    # beyond steps) is not read against them
    as_curves = [name for name in P.gen_steps if not P.generator_config(name)]
    stop_seeds, real_val = cas_reference(cas_table)
    display(Markdown("\n".join(f"- {line}" for line in curve_findings(
        curve_table, {P.profile: {name: P.generator_steps(name) for name in as_curves}},
        {name: seeds for name, seeds in stop_seeds.items() if name in as_curves}, real_val))))
    variants = variant_comparisons(curve_table, margin=P.equivalence_margin)
    if not variants.empty:
        display(Markdown("\n".join(f"- {line}" for line in variant_findings(variants))))
    collapse = collapse_readings(curve_table)
    if not collapse.empty:
        display(collapse)
        display(Markdown(f"- {collapse_finding(collapse)}"))
else:
    print(f"no budget curves for {P.profile!r} yet: python scripts/generator_curves.py --profile {P.profile} "
          f"(minutes on a GPU)")

# %% [markdown]
# ## The best flow measured: CAS against 0.95 × real
# `scripts/flow_sampler_cas.py` also scores the flow at other training budgets and guidance weights than this run's
# (rows named e.g. `flow64000/heun:4:1`: 64,000 steps, 4 Heun steps, guidance 1). The best of them on validation CAS
# (at least 3 seeds) is judged against 0.95 × the real arm above, with a Welch interval: on validation, where it was
# chosen (so read it as optimistic), and on test, which chose nothing (`analysis_generators.best_sampler_reading`).
# The best mean need not be this run's setting: where the sampler comparisons above call a larger budget equivalent
# to this run's (paper: `flow128000/heun:4:1` against `flow64000/heun:4:1`), the cheaper fit is kept.

# %%
best_reading = best_sampler_reading(sampler_rows(runs.results_root() / P.profile / "flow_samplers"), cas_table)
print(best_reading or f"no flow sampler scored with >= 3 seeds for {P.profile!r} yet: python "
                      f"scripts/flow_sampler_cas.py --profile {P.profile} --samplers heun:4 --seeds 0 1 2")
# and this run's own families, each against 0.95 x real on test (Welch, unpaired; nothing was chosen on test)
for family, (share, mean, seeds) in family_shares(cas_table).items():
    print(f"{family}: test CAS {mean:.2%}, {share['ratio']:.3f} of real — {share['verdict']} 0.95x real "
          f"({format_share_interval(share)} over it, {seeds} seeds)")

# %% [markdown]
# ## Per-class quality
# Which classes does each generator get wrong? Per-class CAS (accuracy on that class's test images) and
# per-class recall (how much of that class's real variety the samples cover).

# %%
per_class = []
for r in cas_records:
    if r["key"].get("budget_factor", 1) != 1:
        continue
    arm = "real" if r["key"]["arm"] == "real" else r["key"]["generator"]
    for c, acc in enumerate(r["metrics"]["per_class_test_accuracy"]):
        per_class.append({"arm": arm, "seed": r["key"]["seed"], "class": c, "cas": acc})
cas_order = ["real", *P.cas_names()]
per_class = pd.DataFrame(per_class).groupby(["arm", "class"])["cas"].mean().unstack("class").loc[cas_order]
recall = pd.DataFrame({r["key"]["generator"]: {int(c): s["recall"] for c, s in r["metrics"]["per_class"].items()}
                       for r in quality_records}).T
display(per_class.round(3))
display(recall.round(3))
fig, ax = plt.subplots(figsize=(8, 0.5 * len(cas_order) + 1.2))
im = ax.imshow(per_class.values * 100, cmap="viridis", aspect="auto")
ax.set_yticks(range(len(cas_order)), cas_order)
ax.set_xticks(range(splits.num_classes), splits.classes, rotation=45, ha="right")
fig.colorbar(im, ax=ax, label="per-class test accuracy (%)")
ax.set_title("per-class CAS (mean over seeds)")
plots.save(fig, "generators_per_class_cas", run.dir)

# %% [markdown]
# ## Samples: one row per class
# Each family's quality cell kept the first samples of each class it scored (`cells.kept_sample_grid`), so this
# figure needs no fit. A record written before cells kept them gets them now from the family's fit (trained here if
# the cache is empty): last among the computing cells, so every table and figure above is written first.

# %%
rows = cells.SAMPLE_ROWS
fig, axes = plt.subplots(1, len(P.generator_names) + 1, figsize=(3.2 * (len(P.generator_names) + 1), 3.6))
real_idx = torch.cat([torch.nonzero(val.labels == c).flatten()[:rows] for c in range(splits.num_classes)])
panels = [("real (held out)", val.images[real_idx].float() / 255)]
for record in quality_records:
    kept = cells.kept_sample_grid(record["key"], run.cell_dir(record["key"]), **cells.runtime(P))
    panels.append((record["key"]["generator"], torch.from_numpy(kept).float() / 255))
for ax, (title, images) in zip(axes, panels):
    plots.image_grid(ax, images, rows=splits.num_classes)
    ax.set_title(title)
plots.save(fig, "generators_samples", run.dir)

# %% [markdown]
# ## Reading the results
# - CAS below the real arm's accuracy means the generator lost something the classifier needed; the ratio is
#   the share of the real data's value it kept *at this classifier budget* (see the budget check above). The
#   paired verdict says "inconclusive" when the seeds cannot tell, never "tie".
# - High precision with low recall/coverage is mode dropping: plausible images, too little variety.
# - The storage column compares what a generator needs to sample (its sampling weights) with the real pool
#   stored as uint8: a generator is not a compression of the data unless it is much smaller *and* keeps CAS.
