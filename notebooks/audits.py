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
# # Audits: can a generator's samples give its training images away, and does it amplify a class imbalance?
#
# A generator that replaces a dataset can fail in two ways besides looking bad. It can **copy**: hand back
# near-duplicates of its training images, so "synthetic" data leaks the real data it stands in for. And it can
# **amplify bias**: trained on data where some classes are rare, it learns them worse still. Each audit here is
# held to one rule: it must catch a generator that *does* fail, in the very setting where it reports a pass.
#
# **The positive control.** Beside every generator, a planted **memoriser** (`privacy.Memoriser`: it returns its
# training images plus faint pixel noise) is audited in the same setting. It must be flagged at every N; an
# audit that misses it has no power there, and its "no leak" would mean nothing.
#
# **Privacy, across N.** Generators trained on N real images (the stratified subsets every notebook shares,
# `generators.fit_on_subset`): `pca_gaussian` and the learned flow, each trained on those N images. Every sample
# gets its nearest-neighbour distance to the N training images and to N held-out pool images with the same class
# counts. **Copy excess** = P(d_train < τ) − P(d_heldout < τ), τ the `copy_quantile` quantile of real-to-real
# leave-one-out distances: a smooth, mean-like sample is as near held-out images as training ones (excess ≈ 0); a
# copy is near *its* image only (excess ≈ 1). Measured in pixel space and in the domain feature space (a classifier
# trained on the pool to its plateau; its validation accuracy is shown below). The **membership attack** scores a
# real image by its distance to the nearest sample; its AUC is reported only where the memoriser reaches
# AUC ≥ 0.9 in the same setting (the copier ceiling, shown beside it). The whole-pool models the study uses
# (`audit_zoo` at `gen_steps` with their defaults, cached by the generators notebook unless its `zoo_overrides`
# sets a family otherwise: paper's generators notebook scores a 64,000-step flow sampled with guidance 1, while
# the flow audited here is the 4,000-step one) are audited against all pool images, with the validation split held
# out, in pixel space.
#
# **Two feature spaces.** The whole-pool models' FID / KID in the domain classifier's space and in an independent
# one (the same backbone trained without labels, SimCLR): do the two rank the generators alike?
#
# **Bias.** A generator is trained on an imbalanced subset (`rare_classes` get `rare_fraction` of the `bias_n`
# images each other class gets). Four classifiers, one recipe, one budget: on the real subset (`real`), on it with
# class-balanced resampling (`real_balanced`, the fair reference), on samples with the subset's frequencies
# (`synthetic_matched`) and on balanced samples (`synthetic_balanced`). Amplification = the synthetic balanced
# arm's majority − minority accuracy gap minus the real balanced arm's, paired by seed.
#
# All verdicts: paired on seeds, Holm-corrected over the whole notebook, "equivalent" only by TOST against a stated
# margin (`metrics`); the computation lives in `synthstudy.audits` (`cells`, `analysis`), tested there.
# **Run it:** Run All uses the defaults below (the `quick` profile); finished cells are recorded under
# `results/<profile>/audits/` and skipped on rerun.

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/audits; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 (cifar10 needs allow_download or local files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # each seed: its own subsets, samples and classifier init; at least 3 (95% CI)
val_size: int = 5000              # images carved from train: never seen by a generator; quality reference, judge check
model: str = "cnn"                # classifier of every bias arm and of both feature spaces
epochs: float = 20                # bias classifiers: passes over the subset's images ...
min_steps: int = 300              # ... clipped to [min_steps, max_steps] steps, the same for every arm at that N
max_steps: int = 2500
batch_size: int = 128             # images per step
lr: float = 0.1                   # peak one-cycle learning rate (SGD, Nesterov)
augment: str = "flip_crop"        # none | flip | crop | flip_crop | flip_crop_erase (no flips for digits)
tta: str = "flip_shift"           # test-time views: none | flip | flip_shift
equivalence_margin: float = 0.01  # bias: an accuracy-gap change within ±1 pt is "no change" (TOST)
progress: bool = True             # tqdm progress bars
gen_steps: dict = {"pca_gaussian": 1, "cvae": 800, "cgan": 1200, "flow": 2400}   # whole-pool and bias generator
                                  # steps, shared with the generators notebook so its cached models are reused
gen_seed: int = 0                 # generator training seed, shared with the generators notebook
extractor_steps: int = 3000       # domain classifier steps (x128 images): bench 93.3% at 3,000, 92.45% at 1,350
contrastive_steps: int = 600      # SimCLR steps of the second feature space: probe 83.4% at 600, 83.6% at 3,000
audit_generators: list = ["pca_gaussian", "flow"]   # families trained on each N of the sweep (one fit per N, seed)
audit_gen_steps: dict = {"pca_gaussian": 1, "flow": 2400}   # their steps at N up to 1,000 (flow, 100 images, seed 0:
                                  # pixel copy excess +50 pts at 1,200 steps, +76 at 2,400)
audit_sizes: list = [100, 1000]   # N training images per generator; each needs N held-out pool images
audit_zoo: list = ["pca_gaussian", "flow"]   # whole-pool models (cached): sampling and distances
audit_samples: int = 2000         # samples per privacy cell, at least (3 per training image in the N sweep)
copy_quantile: float = 0.05       # τ: this quantile of real-to-real leave-one-out NN distances
copy_margin: float = 0.02         # a copy excess within ±2 pts of samples is "no excess" (TOST)
auc_margin: float = 0.05          # an attack AUC within 0.5 ± 0.05 is "no leak" (TOST)
bias_generators: list = ["pca_gaussian"]    # families trained on the imbalanced subset (one fit per seed)
bias_n: int = 300                 # images per majority class in the imbalanced subset
rare_classes: list = [0, 4, 7]    # minority class ids: T-shirt/top, Coat, Sneaker (each has a look-alike majority)
rare_fraction: float = 0.1        # a minority class gets this share of bias_n images; 1.0 is the balanced control

# %%
import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from synthstudy import config, contrastive, data, metrics, plots, runs, train
from synthstudy.audits import analysis, bias, cells, privacy

P = config.from_namespace(config.AuditsParams, globals())
splits, pool, val = cells.study_data(P.dataset, P.val_size, P.allow_download)
K, names = splits.num_classes, list(splits.classes)
# the imbalanced subsets are drawn before any training, so a bias_n the pool cannot supply stops here
for s in P.seeds:
    bias.imbalanced_indices(pool.labels.numpy(), P.bias_n, P.rare_classes, P.rare_fraction, seed=s, num_classes=K)
run = runs.Run("audits", P.profile, P.model_dump(), device=str(train.resolve_device(P.device)))
options = {"device": P.device, "progress": P.progress, "allow_download": P.allow_download}
print(f"{splits.name}: {len(pool)} images in the pool, {len(val)} validation, {len(splits.test)} test; "
      f"results in {run.dir}")

# %% [markdown]
# ## The feature spaces and the judge
# The domain classifier, trained on the whole real pool (never the test split), is the feature space of the
# distances and FID, and the judge that says which class a sample looks like. Its validation accuracy says
# whether it is a good one (the bar: 92% on Fashion-MNIST). The contrastive encoder is the second space; its
# k-NN accuracy on validation (features of the pool as references) says how much class information it holds.

# %%
common = cells.common_key(P)
extractor = cells.domain_extractor(common, **options)
second = cells.contrastive_extractor(common, **options)
reference = pool.take(data.stratified_indices(pool.labels.numpy(), min(len(pool), 10000), seed=0))
knn = contrastive.knn_accuracy(second.embed(reference.images), reference.labels, second.embed(val.images), val.labels)
spaces_table = pd.DataFrame([
    {"space": "domain classifier", "trained": f"{P.extractor_steps} steps, labels",
     "validation accuracy (%)": round(extractor.val_accuracy * 100, 2)},
    {"space": "contrastive encoder", "trained": f"{P.contrastive_steps} steps SimCLR, no labels",
     "validation accuracy (%)": round(knn * 100, 2)}])
display(spaces_table)
judge_test = bias.predict_labels(extractor.classifier, splits.test.images)
display(pd.DataFrame({"class": names, "judge test accuracy (%)": [
    round(float((judge_test[splits.test.labels == c] == c).float().mean()) * 100, 1) for c in range(K)],
    "rare in the bias audit": [c in P.rare_classes for c in range(K)]}).set_index("class").T)

# %% [markdown]
# ## Privacy: generators and the memoriser, across N and on the whole pool
# A sweep cell fits (or loads) a generator on a stratified subset of N pool images, draws `max(audit_samples, 3N)`
# samples with the subset's class frequencies, picks N held-out pool images with the same class counts, and
# audits both spaces. A whole-pool cell loads the whole-pool model at `gen_steps`, draws `audit_samples` samples and
# audits them against all pool images, the validation split held out (pixel space; its seeds vary the samples
# only). The memoriser runs in every setting: its AUC is each setting's ceiling.

# %%
privacy_keys = cells.privacy_keys(P)
privacy_records = run.grid(privacy_keys, functools.partial(cells.privacy_cell, **options), progress=P.progress,
                           describe=cells.describe_privacy)
privacy_table = pd.DataFrame([runs.flatten(r) for r in privacy_records])
long = analysis.privacy_long(privacy_table)
ceilings = analysis.attack_ceilings(long)
privacy_family = pd.concat([analysis.copy_excess_comparisons(long, P.copy_margin),
                            analysis.attack_comparisons(long, ceilings, P.auc_margin)], ignore_index=True)

# %% [markdown]
# ## Copy excess and attack AUC vs N (mean ± 95% CI over seeds)
# Top: the copy excess (0: samples as near held-out images as training ones). Bottom: the attack AUC where it
# has power, with the memoriser's AUC (the ceiling) as its own line. The rightmost points are the whole-pool
# models, pixel space only.

# %%
fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
for col, space in enumerate(analysis.SPACES):
    part = long[long["space"] == space]
    privacy.plot_vs_n(metrics.summarize(part, by=["generator", "n_train"], value="copy_excess"), axes[0, col],
                      "copy excess P(d_train<τ) − P(d_heldout<τ)", reference=0.0,
                      bounds=(-1.0, 1.0))
    powered = part.merge(ceilings, on=["n_train", "space"])
    powered = powered[powered["ceiling"] >= analysis.CEILING_MIN]
    if len(powered):
        privacy.plot_vs_n(metrics.summarize(powered, by=["generator", "n_train"], value="mia_auc"), axes[1, col],
                          "attack AUC (memoriser = ceiling)", reference=0.5)
    axes[0, col].set_title(f"{space} space")
axes[0, 0].legend(fontsize=8)
fig.suptitle(f"{P.dataset}: do samples sit nearer the N training images than unseen ones?")
fig.tight_layout()
plots.save(fig, "audits_privacy_vs_n", run.dir)

# %% [markdown]
# ## How near: d_train / d_heldout per sample, and the closest pairs
# Around 1: a sample is as near unseen images as seen ones; near 0: it sits on a training image. Then, for the
# smallest N and the whole pool (first seed), the 8 samples nearest a training image above that image.

# %%
audited = [*dict.fromkeys([*P.audit_generators, *P.audit_zoo]), cells.MEMORISER]
fig, axes = plt.subplots(len(audited), 2, figsize=(10, 2.8 * len(audited)), squeeze=False)
for row, g in enumerate(audited):
    for col, space in enumerate(analysis.SPACES):
        frames = [pd.DataFrame({"n": r["metrics"]["n_train"], "ratio": np.load(run.cell_dir(k) / f"{space}_ratio.npy")})
                  for k, r in zip(privacy_keys, privacy_records)
                  if k["generator"] == g and f"{space}_copy_rate" in r["metrics"]]
        if frames:
            privacy.plot_ratios(pd.concat(frames), axes[row, col], title=f"{g}, {space} space")
        else:
            axes[row, col].set_axis_off()
fig.tight_layout()
plots.save(fig, "audits_distance_ratio", run.dir)

for key, record in zip(privacy_keys, privacy_records):
    if key["seed"] != P.seeds[0] or key["n"] not in (min(P.audit_sizes), "all") or key["generator"] == cells.MEMORISER:
        continue
    pairs_img = torch.from_numpy(np.load(run.cell_dir(key) / "pixel_pairs.npy"))
    pairs = [(i, i, d) for i, d in enumerate(record["metrics"]["pixel_pair_distances"])]
    fig = privacy.plot_closest_pairs(pairs_img[:, 0], pairs_img[:, 1], pairs,
                                     threshold=record["metrics"]["pixel_copy_threshold"],
                                     title=f"{key['generator']}, N={record['metrics']['n_train']}: closest pairs "
                                           f"in pixel space")
    plots.save(fig, f"audits_closest_pairs_{key['generator']}_n{key['n']}", run.dir)
    plt.show()

# %% [markdown]
# ## Two feature spaces: do they rank the whole-pool generators alike?
# FID and KID of each whole-pool model's samples (float, as generated) against the validation images, in both
# spaces; mean ± 95% CI over seeds (sampling only). The memoriser's row is the floor: real images themselves.

# %%
zoo_table = privacy_table[privacy_table["n"] == "all"]
quality_rows = []
for value in ("fid", "kid"):
    ranked, disagreements = analysis.ranking_agreement(zoo_table, value=value)
    quality_rows.append(analysis.ranking_text(ranked, disagreements, value=value))
    display(ranked.round(4))
floor = zoo_table[zoo_table["generator"] == cells.MEMORISER][["domain_fid", "contrastive_fid"]].mean()
quality_rows.append(f"The memoriser's FID (real images, the floor): {floor['domain_fid']:.3g} (domain), "
                    f"{floor['contrastive_fid']:.3g} (contrastive).")
display(Markdown("\n\n".join(quality_rows)))

# %% [markdown]
# ## Bias: the grid, generators × seeds
# Each seed draws its own imbalanced subset and fits each generator on it; the four arms train with one recipe and
# `steps_for(subset size)` steps each, and are scored per class on the test split. Sampling that is not forced
# towards the rare classes (labels drawn uniformly, or with the subset's frequencies) is judged by the domain
# classifier, against what it says of real validation images with the same labels (`expected`).

# %%
bias_keys = cells.bias_keys(P, K)
bias_records = run.grid(bias_keys, functools.partial(cells.bias_cell, **options), progress=P.progress,
                        describe=cells.describe_bias)
bias_table = pd.DataFrame([runs.flatten(r) for r in bias_records])
groups = analysis.bias_groups(bias_records)
table = run.write_table(pd.concat([privacy_table, bias_table], ignore_index=True).to_dict("records"))

per_class = pd.DataFrame([{"generator": r["key"]["generator"], "seed": r["key"]["seed"], "arm": arm, "cls": c,
                           "accuracy": acc} for r in bias_records for arm in bias.ARMS
                          for c, acc in enumerate(r["metrics"][f"{arm}_per_class"])])
fig, axes = plt.subplots(len(P.bias_generators), 1, figsize=(11, 3.6 * len(P.bias_generators)), squeeze=False)
for ax, g in zip(axes[:, 0], P.bias_generators):
    bias.plot_per_class(per_class[per_class["generator"] == g], ax, P.rare_classes, names)
    ax.set_title(f"{g} trained on {P.bias_n} images per class, {P.rare_fraction:g}× that for the rare classes")
fig.tight_layout()
plots.save(fig, "audits_bias_per_class", run.dir)

gap_summary = metrics.summarize(groups, by=["generator", "arm"], value="gap")
fig, ax = plt.subplots(figsize=(7.5, 3.5))
plots.style()
for i, g in enumerate(P.bias_generators):
    s = gap_summary[gap_summary["generator"] == g].set_index("arm").loc[list(bias.ARMS)]
    ax.errorbar(np.arange(len(bias.ARMS)) + 0.15 * i, s["mean"] * 100, yerr=s["ci"].fillna(0) * 100, fmt="o",
                capsize=3, label=g)
ax.axhline(0, color="0.4", lw=1)
ax.set_xticks(range(len(bias.ARMS)))
ax.set_xticklabels(bias.ARMS)
ax.set_ylabel("majority − minority accuracy (pts)")
ax.legend(fontsize=8)
ax.set_title("accuracy gap between majority and minority classes (mean ± 95% CI)")
fig.tight_layout()
plots.save(fig, "audits_bias_gap", run.dir)

share_rows = []
for g, group in bias_table.groupby("generator"):
    for sampling in ("uniform", "frequencies"):
        ratio = {"scale": 1, "digits": 2}
        share_rows.append({"generator": g, "labels drawn": sampling, **{
            value: metrics.format_ci(*metrics.mean_ci(group[f"{sampling}_{value}"]),
                                     **(ratio if value == "judged_over_expected" else {"digits": 1}))
            for value in ("requested", "expected", "judged", "judged_over_expected")}})
display(Markdown("Minority share of the samples (%): asked for, expected from a perfect generator under this "
                 "judge, and judged; mean ± 95% CI over seeds."))
display(pd.DataFrame(share_rows))

# %% [markdown]
# ## What was found
# One family of comparisons for the whole notebook (Holm): copy excess and attack AUC per generator, N and space,
# and the bias comparisons. "higher" / "lower" only where the Holm-corrected paired test says so; "equivalent"
# only where TOST against the margin does; otherwise "the seeds cannot tell".

# %%
family = metrics.with_verdicts(pd.concat([privacy_family, analysis.bias_comparisons(groups, P.equivalence_margin)],
                                         ignore_index=True))
lines = ["**Feature spaces.** Domain classifier: validation accuracy "
         f"{extractor.val_accuracy:.1%}{'' if extractor.val_accuracy >= 0.92 else ' (below the 92% bar)'}; "
         f"contrastive encoder: k-NN {knn:.1%}. " + " ".join(quality_rows[:2]),
         "\n**Copying.**", *analysis.privacy_findings(family, ceilings, len(pool)),
         "\n**Bias** (amplification: synthetic balanced vs real balanced).", *analysis.bias_findings(family, groups)]
display(Markdown("\n".join(run.write_findings(lines))))
display(analysis.positive_control(family))
summary = run.write_table([*analysis.privacy_summary(family, ceilings, len(pool)).to_dict("records"),
                           *analysis.bias_summary(family, groups).to_dict("records")],
                          name="summary.csv")   # the README's audits table (synthstudy.report)

# %% [markdown]
# ### Reading these numbers
# - The copy excess is calibrated by construction: fresh images from the data distribution fall within τ of a
#   training image as often as of a held-out one. Pixel distances favour blurry, mean-like samples (near every
#   image), which the plain copy rate counted as copies; the excess does not.
# - The attack is the simplest black-box one (nearest sample). Its power is bounded by the samples per member: with
#   3 per training image the memoriser reaches ≈ 0.97; with `audit_samples` for 55,000 images ≈ 0.52, so no AUC is
#   reported for the whole-pool models. A stronger attacker (weights, latents) can only do better.
# - The learned generators in the sweep train `audit_gen_steps` steps on N images: hundreds of epochs at N=100,
#   where memorising is possible; the whole-pool models see each image 1–2 times.
# - The bias arms share the architecture, the budget and augmentation; only the data source differs. The fair
#   reference of the synthetic balanced arm is the real arm with the same balance (class-balanced resampling).
