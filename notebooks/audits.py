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
# # Audits: does the generator leak its training images, and does it amplify bias?
#
# A generator that replaces a dataset has two ways to fail besides looking bad. It can **copy**: hand back
# (near-)duplicates of the images it was trained on, so that "synthetic" data leaks the real data it stands in
# for. And it can **amplify bias**: trained on data where some classes are rare, it can learn those classes
# worse still, so that a classifier trained on its samples is even less fair to the minority than one trained on
# the real data.
#
# **Privacy, across N.** For generators trained on N real images (the stratified subsets every notebook shares,
# `generators.fit_on_subset`), every synthetic sample gets its nearest-neighbour distance to the N training
# images and to N held-out real images with the same class counts that the generator never saw. Measured in
# pixel space and in the domain feature space (the penultimate layer of a classifier trained on the real pool,
# `metrics.domain_extractor`). From these: the ratio of the two distances, a **copy rate** (share of samples
# nearer a training image than the 5% quantile of the training images' distances to each other: fresh images
# from the data distribution score about 5%), and the AUC of a **membership-inference attack** that calls a real
# image "in the training set" when a sample lies close to it (0.5: nothing leaks). Small N is where copying is
# expected. The generators the rest of the study uses, trained on the whole pool (`audit_zoo`, cached by the
# generators notebook), are audited too: against all their training images, with the validation split as the
# held-out set.
#
# **Bias.** A generator is trained on a deliberately imbalanced subset (`rare_classes` get `rare_fraction` of
# the `bias_n` images each other class gets). Then: per-class sample quality, how often samples are judged to
# be minority classes when sampling is not forced towards them, and the accuracy gap between majority and
# minority classes of a classifier trained on its samples vs one trained on the same imbalanced real images.
#
# **Run it:** Run All in JupyterLab uses the defaults below (the `quick` profile); `make reproduce` runs it last,
# after the generators notebook has cached the models it can reuse. Finished cells are recorded under
# `results/<profile>/audits/` and skipped on rerun.

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/audits; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 (cifar10 needs allow_download or local files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # each seed draws its own training subset and classifier init; at least 3 (95% CI)
val_size: int = 5000              # images carved from train: never seen by a generator; per-class quality reference
model: str = "cnn"                # classifier of every bias-audit arm (one architecture for real and synthetic)
steps: int = 150                  # optimizer steps per bias-audit classifier, the same for every arm
batch_size: int = 128             # images per step
lr: float = 0.1                   # peak one-cycle learning rate (SGD, Nesterov)
augment: str = "flip_crop"        # none | flip | crop | flip_crop | flip_crop_erase (no flips for digits)
tta: str = "flip"                 # test-time views: none | flip | flip_shift
progress: bool = True             # tqdm progress bars
gen_steps: dict = {"pca_gaussian": 1, "cvae": 800, "cgan": 1200, "flow": 2400}   # generator training steps per
                                  # family, shared with the generators notebook so its cached models are reused
gen_seed: int = 0                 # generator training seed, shared with the generators notebook
extractor_steps: int = 600        # training steps of the domain classifier (feature space and sample judge)
audit_generators: list = ["pca_gaussian"]   # families audited for copying; a learned one adds a fit per
                                  # (N, seed), tens of minutes each on 2 cores, so the full profile audits them
audit_sizes: list = [100, 300, 1000]        # N training images per generator (stratified subsets); each N
                                  # needs N held-out pool images, so at most half the pool
audit_zoo: list = ["pca_gaussian", "cvae", "cgan", "flow"]   # families whose whole-pool models (the
                                  # generators notebook's, cached) are audited too: sampling and distances only
audit_samples: int = 2000         # synthetic samples per privacy cell, at least (3 per training image in the
                                  # N sweep; exactly this many for the whole-pool models, whose sampling is slow)
copy_quantile: float = 0.05       # copy threshold, as a quantile of train-to-train leave-one-out NN distances:
                                  # fresh images from the data distribution are flagged at about this rate
bias_generators: list = ["pca_gaussian"]    # families trained on the imbalanced subset (one fit per seed)
bias_n: int = 500                 # images per majority class in the imbalanced subset
rare_classes: list = [0, 4, 7]    # minority class ids: T-shirt/top, Coat, Sneaker (each has a look-alike majority)
rare_fraction: float = 0.1        # a minority class gets this share of bias_n images; 1.0 is the balanced control

# %%
import numpy as np
import pandas as pd
import torch
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from synthstudy import config, data, generators, metrics, plots, runs, sources, train
from synthstudy.audits import bias, privacy

P = config.from_namespace(config.AuditsParams, globals())
splits = data.load(P.dataset, allow_download=P.allow_download)
pool, val = data.holdout(splits.train, P.val_size, seed=0)
K, names = splits.num_classes, list(splits.classes)
# the imbalanced subsets are drawn before any training, so a bias_n the pool cannot supply stops here
bias_subsets = {s: bias.imbalanced_indices(pool.labels.numpy(), P.bias_n, P.rare_classes, P.rare_fraction, seed=s,
                                           num_classes=K) for s in P.seeds}
run = runs.Run("audits", P.profile, P.model_dump(), device=str(train.resolve_device(P.device)))
# distance matrices run on the GPU when there is one (the full profile's large N); on a CPU nothing changes
distance_device = train.resolve_device(P.device)
print(f"{splits.name}: {len(pool)} images in the pool, {len(val)} validation, {len(splits.test)} test; "
      f"results in {run.dir}")

# %% [markdown]
# ## The domain classifier: a feature space and a judge
# One classifier trained on the whole real pool (balanced, never the test split) serves twice: its penultimate
# layer is the feature space for distances (two images are close when it sees them alike, so a shifted copy still
# counts as a copy), and its predictions are the "judge" that says which class a sample looks like. It is cached
# and shared with the generators notebook. Its own per-class accuracy shows which classes are intrinsically hard:
# a gap between classes is only the generator's doing beyond that.

# %%
# the same arguments as the generators notebook: one cached extractor, one feature space for the whole study
extractor = metrics.domain_extractor(pool, P.dataset, steps=P.extractor_steps, seed=0, model=P.model,
                                     augment=P.augment, batch_size=P.batch_size, device=P.device,
                                     progress=P.progress)


def judge(images):
    return bias.predict_labels(extractor.classifier, images)


val_confusion = bias.confusion(judge(val.images), val.labels, K)
test_pred = judge(splits.test.images)
judge_per_class = [float((test_pred[splits.test.labels == c] == c).float().mean()) for c in range(K)]
display(pd.DataFrame({"class": names, "judge test accuracy (%)": np.round(np.array(judge_per_class) * 100, 1),
                      "rare in the bias audit": [c in P.rare_classes for c in range(K)]}))

# %% [markdown]
# ## Privacy: the grid, generators × N × seeds, and the whole-pool models
# A cell of the N sweep fits (or loads) a generator on a stratified subset of N pool images, draws
# `max(audit_samples, 3N)` samples with the subset's class frequencies (3 per training image: a generator that
# returned its training images at random would hit 95% of them), picks N held-out pool images with the same
# class counts, and audits both spaces. A whole-pool cell loads the generator the generators notebook trained on
# all pool images (subset seed 0), draws `audit_samples` samples and audits them against all pool images, with
# the validation split as the held-out set, in pixel space only: the domain classifier was trained on the pool,
# so in its feature space the members (its training images) and the non-members (validation images it never saw)
# are not on an equal footing. Its seeds vary only the samples drawn (the model is one), so its intervals are
# about sampling, not training. Each cell keeps the indices it used, each sample's distance ratio
# and its 8 closest sample / training-image pairs.

# %%
_pool_loo = {}


def privacy_cell(key, cell_dir):
    name, n, seed = key["generator"], key["n"], key["seed"]
    gen, idx = generators.fit_on_subset(name, pool, dataset=P.dataset, n=n, subset_seed=key["subset_seed"],
                                        steps=P.gen_steps[name], seed=P.gen_seed, device=P.device,
                                        progress=P.progress)
    runs.save_npy(cell_dir / "indices.npy", idx)
    x_labels = pool.labels[idx]
    if n == "all":
        members, nonmembers = pool.images, val.images
        count = P.audit_samples
        # the pool's leave-one-out distances depend on the pool alone, not on the generator: computed once, so
        # every whole-pool model is held to the same copy threshold
        if "pixel" not in _pool_loo:
            _pool_loo["pixel"] = privacy.leave_one_out(pool.images, device=distance_device)
        spaces = {"pixel": (None, _pool_loo["pixel"])}
    else:
        held = privacy.heldout_indices(pool.labels.numpy(), idx, seed=seed)
        runs.save_npy(cell_dir / "heldout_indices.npy", held)
        members, nonmembers = pool.images[torch.as_tensor(idx)], pool.images[torch.as_tensor(held)]
        count = max(P.audit_samples, privacy.SAMPLES_PER_IMAGE * n)
        spaces = {"pixel": (None, None), "feature": (extractor.embed, None)}   # own thresholds, in `audit`
    x = privacy.generate(gen, privacy.labels_like(x_labels, count, seed=seed), seed=seed)
    out = {"n_train": len(idx)}
    for space, (embed, loo) in spaces.items():
        report = privacy.audit(x, members, nonmembers, embed=embed, copy_quantile=P.copy_quantile, space=space,
                               seed=seed, device=distance_device, train_nn=loo)
        out.update({f"{space}_{k}": v for k, v in report.summary().items()})
        runs.save_npy(cell_dir / f"{space}_ratio.npy", report.ratio.numpy().astype(np.float32))
        pairs = privacy.closest_pairs(report, k=8)
        runs.save_npy(cell_dir / f"{space}_pairs.npy",
                      np.stack([np.stack([x[i].mul(255).round().byte().numpy(), members[j].numpy()])
                                for i, j, _ in pairs]))
        out[f"{space}_pair_distances"] = [d for *_, d in pairs]
    return out


def describe_privacy(k, m):
    def both(name, fmt):
        return " / ".join(format(m[f"{s}_{name}"], fmt) if f"{s}_{name}" in m else "—" for s in ("pixel", "feature"))
    return (f"privacy {k['generator']} n={k['n']} seed={k['seed']}: copy rate {both('copy_rate', '.1%')}, "
            f"attack AUC {both('mia_auc', '.3f')} (pixel / feature)")


common = {"part": "privacy", "dataset": P.dataset, "val_size": P.val_size,
          "audit_samples": P.audit_samples, "copy_quantile": P.copy_quantile, "extractor_steps": P.extractor_steps}
privacy_keys = ([{**common, "generator": g, "n": n, "subset_seed": s, "seed": s,
                  **generators.cell_key(g, P.gen_steps[g], P.gen_seed)}
                 for g in P.audit_generators for n in P.resolved_sizes() for s in P.seeds]
                + [{**common, "generator": g, "n": "all", "subset_seed": 0, "seed": s,
                    **generators.cell_key(g, P.gen_steps[g], P.gen_seed),
                    "spaces": ["pixel"]} for g in P.audit_zoo for s in P.seeds])
privacy_records = run.grid(privacy_keys, privacy_cell, progress=P.progress, describe=describe_privacy)
privacy_table = pd.DataFrame([runs.flatten(r) for r in privacy_records])

# %% [markdown]
# ## Copy rate and membership attack vs N (mean ± 95% CI over seeds)
# Dashed: what a generator that does not copy would score (a copy rate of `copy_quantile`, an AUC of 0.5). Above
# the line, the generator's samples sit nearer its own training images than fresh images from the same
# distribution would. The rightmost points are the whole-pool models (pixel space only). Their attack is weak by
# construction: with `audit_samples` samples for 55,000 training images, even a generator that returned training
# images would reach an AUC of only about 0.52 (the table's `copier AUC`); their copy rate is the informative
# number.

# %%
long = pd.concat([privacy_table.assign(space=space, copy_rate=privacy_table[f"{space}_copy_rate"],
                                       mia_auc=privacy_table[f"{space}_mia_auc"])
                  for space in ("pixel", "feature")])
privacy_summary = {(space, value): metrics.summarize(long[long["space"] == space].dropna(subset=[value]),
                                                     by=["generator", "n_train"], value=value)
                   for space in ("pixel", "feature") for value in ("copy_rate", "mia_auc")}
fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
for col, space in enumerate(("pixel", "feature")):
    privacy.plot_vs_n(privacy_summary[space, "copy_rate"], axes[0, col], "copy rate", reference=P.copy_quantile)
    privacy.plot_vs_n(privacy_summary[space, "mia_auc"], axes[1, col], "membership attack AUC", reference=0.5)
    axes[0, col].set_title(f"{space} space")
axes[0, 0].legend(fontsize=8)
fig.suptitle(f"{P.dataset}: does the generator copy its N training images?")
fig.tight_layout()
plots.save(fig, "audits_privacy_vs_n", run.dir)

rows = []
for (g, n), group in privacy_table.groupby(["generator", "n_train"]):
    row = {"generator": g, "N": n, "copier AUC": f"{group['pixel_copier_auc'].mean():.3f}"}
    for space in ("pixel", "feature"):
        for value, scale in (("copy_rate", 100), ("mia_auc", 1), ("closer_to_train", 100)):
            values = group[f"{space}_{value}"].dropna() if f"{space}_{value}" in group else []
            row[f"{space} {value}"] = (metrics.format_ci(*metrics.mean_ci(values), scale=scale,
                                                         digits=1 if scale == 100 else 3) if len(values) else "—")
    rows.append(row)
display(pd.DataFrame(rows))

# %% [markdown]
# ## How near: d_train / d_heldout per sample
# Each sample's distance to its nearest training image divided by the distance to its nearest held-out image
# (all seeds pooled). Around 1: as near unseen images as seen ones. Near 0: sitting on a training image.

# %%
audited = list(dict.fromkeys(P.audit_generators + P.audit_zoo))
fig, axes = plt.subplots(len(audited), 2, figsize=(10, 3.2 * len(audited)), squeeze=False)
for row, g in enumerate(audited):
    for col, space in enumerate(("pixel", "feature")):
        # run.grid returns records in the order of the keys; a cell's folder is found from the key as built here
        # (a record read back from disk has its key's fields in another order, which changes the folder's name)
        frames = [pd.DataFrame({"n": r["metrics"]["n_train"],
                                "ratio": np.load(run.cell_dir(k) / f"{space}_ratio.npy")})
                  for k, r in zip(privacy_keys, privacy_records)
                  if k["generator"] == g and f"{space}_copy_rate" in r["metrics"]]
        if frames:
            privacy.plot_ratios(pd.concat(frames), axes[row, col], title=f"{g}, {space} space")
        else:
            axes[row, col].set_axis_off()
fig.tight_layout()
plots.save(fig, "audits_distance_ratio", run.dir)

# %% [markdown]
# ## The closest pairs
# For the smallest N of the sweep and for the whole-pool models (first seed), the 8 samples nearest to a training
# image, each above its nearest training image, with their distance ("copy" when below the threshold). A copy
# looks like its partner; a sample that merely shares the class average does not.

# %%
shown_pairs = ([(g, min(P.audit_sizes)) for g in P.audit_generators] + [(g, "all") for g in P.audit_zoo])
for g, n in shown_pairs:
    key, record = next((k, r) for k, r in zip(privacy_keys, privacy_records)
                       if k["generator"] == g and k["n"] == n and k["seed"] == P.seeds[0])
    for space in [s for s in ("pixel", "feature") if f"{s}_pair_distances" in record["metrics"]]:
        pairs_img = torch.from_numpy(np.load(run.cell_dir(key) / f"{space}_pairs.npy"))
        pairs = [(i, i, d) for i, d in enumerate(record["metrics"][f"{space}_pair_distances"])]
        fig = privacy.plot_closest_pairs(pairs_img[:, 0], pairs_img[:, 1], pairs,
                                         threshold=record["metrics"][f"{space}_copy_threshold"],
                                         title=f"{g}, N={record['metrics']['n_train']}: closest pairs in "
                                               f"{space} space")
        plots.save(fig, f"audits_closest_pairs_{g}_n{n}_{space}", run.dir)
        plt.show()

# %% [markdown]
# ## Bias: the grid, generators × seeds
# Each seed draws its own imbalanced subset of the pool (`bias_n` images per majority class, `rare_fraction` of
# that per minority class) and fits each generator on it. Three classifiers, one architecture, one recipe, one
# step budget, scored per class on the real test split:
# - `real`: trained on the imbalanced real subset itself;
# - `synthetic_matched`: trained on fresh samples with the subset's class frequencies (like for like: what the
#   generator does to the imbalance it was given);
# - `synthetic_balanced`: trained on fresh samples with uniform labels (the generator's promise: ask for as many
#   rare-class images as common ones). Its per-class accuracy is the per-class CAS.
#
# Sampling that is *not* forced towards the rare classes is checked twice, labels drawn uniformly and with the
# subset's frequencies: the generator is conditional, so what counts is what the judge says a sample is, not the
# label it was asked for. The judge's verdicts on real validation images drawn with the same labels give the
# share it would report for a perfect generator (`expected`), so its own confusions are not counted. Per-class
# precision / recall compare each class's samples with the validation images of that class in the feature space.

# %%
def bias_cell(key, cell_dir):
    name, seed = key["generator"], key["seed"]
    idx = bias_subsets[seed]
    subset = pool.take(idx)
    runs.save_npy(cell_dir / "indices.npy", idx)
    data_key = {"dataset": P.dataset, "pool_size": len(pool), "imbalanced": True, "per_class": P.bias_n,
                "rare_classes": sorted(P.rare_classes), "rare_fraction": P.rare_fraction, "subset_seed": seed}
    gen = generators.fit_cached(name, subset, data_key=data_key, config={}, steps=P.gen_steps[name],
                                seed=P.gen_seed, device=P.device, progress=P.progress, num_classes=K)
    freqs = bias.class_frequencies(subset.labels, K)
    cfg = P.train_config(seed=seed, device=P.device, progress=P.progress)
    arms = {"real": sources.ImageSetSource(subset),
            "synthetic_matched": sources.GeneratorStream(gen, class_probs=freqs),
            "synthetic_balanced": sources.GeneratorStream(gen)}
    out = {"subset_size": len(subset)}
    for arm, source in arms.items():
        scored = metrics.cas(source, splits.test, cfg, model=P.model, num_classes=K)
        out[f"{arm}_accuracy"], out[f"{arm}_per_class"] = scored["cas"], scored["per_class_cas"]
        out[f"{arm}_majority"], out[f"{arm}_minority"] = bias.group_means(scored["per_class_cas"], P.rare_classes)
        out[f"{arm}_gap"] = out[f"{arm}_majority"] - out[f"{arm}_minority"]
    for sampling, probs in (("uniform", torch.ones(K)), ("frequencies", freqs)):
        shares = bias.generation_shares(gen, judge, probs, P.rare_classes, count=P.audit_samples, seed=seed,
                                        real_confusion=val_confusion)
        out.update({f"{sampling}_{k}": v for k, v in shares.items()})
    quality = bias.per_class_quality(extractor.embed, val, gen, seed=seed)
    for value in ("precision", "recall"):
        out[f"{value}_per_class"] = [quality[c][value] for c in range(K)]
        out[f"{value}_gap"] = bias.majority_minority_gap(out[f"{value}_per_class"], P.rare_classes)
    return out


bias_keys = [{"part": "bias", "dataset": P.dataset, "val_size": P.val_size, "generator": g, "seed": s,
              "bias_n": P.bias_n, "rare_classes": sorted(P.rare_classes), "rare_fraction": P.rare_fraction,
              **generators.cell_key(g, P.gen_steps[g], P.gen_seed), "extractor_steps": P.extractor_steps,
              "audit_samples": P.audit_samples, "model": P.model, "steps": P.steps, "batch_size": P.batch_size,
              "lr": P.lr, "augment": P.augment, "tta": P.tta}
             for g in P.bias_generators for s in P.seeds]
bias_records = run.grid(
    bias_keys, bias_cell, progress=P.progress,
    describe=lambda k, m: (f"bias {k['generator']} seed={k['seed']}: majority-minority gap real "
                           f"{m['real_gap']:.1%}, synthetic matched {m['synthetic_matched_gap']:.1%}, balanced "
                           f"{m['synthetic_balanced_gap']:.1%}"))
bias_table = pd.DataFrame([runs.flatten(r) for r in bias_records])
table = run.write_table(pd.concat([privacy_table, bias_table], ignore_index=True).to_dict("records"))

# %% [markdown]
# ## Per-class accuracy: real imbalanced data vs the generator's samples
# Mean ± 95% CI over seeds; minority classes shaded. The judge's column above says how hard each class is when
# every class is plentiful.

# %%
ARMS = ("real", "synthetic_matched", "synthetic_balanced")
per_class = pd.DataFrame([{"generator": r["key"]["generator"], "seed": r["key"]["seed"], "arm": arm, "cls": c,
                           "accuracy": acc}
                          for r in bias_records for arm in ARMS
                          for c, acc in enumerate(r["metrics"][f"{arm}_per_class"])])
fig, axes = plt.subplots(len(P.bias_generators), 1, figsize=(10, 3.6 * len(P.bias_generators)), squeeze=False)
for ax, g in zip(axes[:, 0], P.bias_generators):
    bias.plot_per_class(per_class[per_class["generator"] == g], ax, P.rare_classes, names)
    ax.set_title(f"{g} trained on {P.bias_n} images per class, {P.rare_fraction:g}× that for the rare classes")
fig.tight_layout()
plots.save(fig, "audits_bias_per_class", run.dir)

# %% [markdown]
# ## Does the gap grow? Majority minus minority accuracy, synthetic vs real
# `change` = the synthetic arm's value minus the real arm's, paired by seed (same subset), with its 95% CI: the gap
# is "amplified" when the whole interval lies above 0, "reduced" when below, otherwise the seeds cannot tell. The
# minority and majority accuracies say *how*: a gap can also narrow because the majority classes lose accuracy
# (levelling down), not because the minority gains.

# %%
groups = pd.DataFrame([{"generator": r["key"]["generator"], "seed": r["key"]["seed"], "arm": arm,
                        **{v: r["metrics"][f"{arm}_{v}"] for v in ("gap", "minority", "majority", "accuracy")}}
                       for r in bias_records for arm in ARMS])
amplification = bias.amplification(groups)
changes = {v: bias.paired_change(groups, v).set_index(["generator", "arm"]) for v in ("minority", "majority",
                                                                                     "accuracy")}


def pts(mean, half):
    return metrics.format_ci(mean, half, digits=1)


shown = pd.DataFrame([{
    "generator": row.generator, "arm": row.arm, "seeds": row.seeds,
    "gap, real (pts)": pts(row.reference_mean, row.reference_ci), "gap, synthetic (pts)": pts(row.arm_mean, row.arm_ci),
    "gap change (pts)": pts(row.change, row.change_ci), "verdict": row.verdict,
    **{f"{v} acc. change (pts)": pts(changes[v].loc[(row.generator, row.arm), "change"],
                                     changes[v].loc[(row.generator, row.arm), "change_ci"])
       for v in ("minority", "majority", "accuracy")}} for row in amplification.itertuples()])
display(shown)

gap_summary = metrics.summarize(groups, by=["generator", "arm"], value="gap")
fig, ax = plt.subplots(figsize=(7, 3.5))
plots.style()
for i, g in enumerate(P.bias_generators):
    s = gap_summary[gap_summary["generator"] == g].set_index("arm").loc[list(ARMS)]
    ax.errorbar(np.arange(len(ARMS)) + 0.15 * i, s["mean"] * 100, yerr=s["ci"].fillna(0) * 100, fmt="o",
                capsize=3, label=g)
ax.axhline(0, color="0.4", lw=1)
ax.set_xticks(range(len(ARMS)))
ax.set_xticklabels(ARMS)
ax.set_ylabel("majority − minority accuracy (pts)")
ax.legend(fontsize=8)
ax.set_title("accuracy gap between majority and minority classes (mean ± 95% CI)")
fig.tight_layout()
plots.save(fig, "audits_bias_gap", run.dir)

# %% [markdown]
# ## What comes out when sampling is not forced, and how good each class's samples are

# %%
share_rows = []
for sampling in ("uniform", "frequencies"):
    for g, group in bias_table.groupby("generator"):
        row = {"generator": g, "labels drawn": sampling}
        for value in ("requested", "expected", "judged", "judged_over_expected"):
            mean, half = metrics.mean_ci(group[f"{sampling}_{value}"])
            row[value] = metrics.format_ci(mean, half, scale=1 if value == "judged_over_expected" else 100,
                                           digits=2 if value == "judged_over_expected" else 1)
        share_rows.append(row)
display(Markdown("Minority share of the samples (%): asked for, expected from a perfect generator under this "
                 "judge, and judged; mean ± 95% CI over seeds."))
display(pd.DataFrame(share_rows))

quality_rows = pd.DataFrame([{"generator": r["key"]["generator"], "seed": r["key"]["seed"], "arm": value, "cls": c,
                              "accuracy": v}
                             for r in bias_records for value in ("precision", "recall")
                             for c, v in enumerate(r["metrics"][f"{value}_per_class"])])
fig, axes = plt.subplots(len(P.bias_generators), 1, figsize=(10, 3.4 * len(P.bias_generators)), squeeze=False)
for ax, g in zip(axes[:, 0], P.bias_generators):
    bias.plot_per_class(quality_rows[quality_rows["generator"] == g], ax, P.rare_classes, names,
                        label="precision / recall (%)")
    ax.set_title(f"{g}: per-class sample quality against validation images (feature space, k=5)")
fig.tight_layout()
plots.save(fig, "audits_bias_quality", run.dir)

# %% [markdown]
# ## What was found
# Written from the numbers above: a difference is claimed only where its 95% CI (over seeds) excludes the
# reference value (a copy rate of `copy_quantile`, an attack AUC of 0.5, a gap change of 0).

# %%
def ci(values, scale=100, digits=1):
    mean, half = metrics.mean_ci(values)
    return metrics.format_ci(mean, half, scale=scale, digits=digits), mean - half, mean + half


lines, summary_rows = ["**Copying.**"], []
for g in audited:
    for n in sorted(privacy_table.loc[privacy_table["generator"] == g, "n_train"].unique()):
        group = privacy_table[(privacy_table["generator"] == g) & (privacy_table["n_train"] == n)]
        whole = n == len(pool)
        setting = f"N={n}" + (" (whole pool)" if whole else "")
        copier = group["pixel_copier_auc"].mean()
        # whole pool: pixel space only (the domain classifier was trained on the members, not the non-members)
        spaces = ("pixel",) if whole else ("pixel", "feature")
        texts, found = {}, {}
        for measure, reference, scale, digits in (("copy_rate", P.copy_quantile, 100, 1), ("mia_auc", 0.5, 1, 3)):
            cells = {space: ci(group[f"{space}_{measure}"], scale, digits) for space in spaces}
            texts[measure] = " / ".join(cells[space][0] if space in cells else "—" for space in ("pixel", "feature"))
            found[measure] = [space for space, c in cells.items() if c[1] > reference]
        copy_word = (f"more copies than fresh images ({', '.join(found['copy_rate'])})" if found["copy_rate"]
                     else "no detectable excess of copies")
        leak_word = (f"membership leaks ({', '.join(found['mia_auc'])})" if found["mia_auc"]
                     else "no detectable leak" + (f" (weak attack: a copier would reach {copier:.2f})"
                                                  if copier < 0.75 else ""))
        summary_rows += [
            {"audit": "privacy", "generator": g, "setting": setting, "measure": "copy rate (%), pixel / feature",
             "value (mean ± 95% CI)": texts["copy_rate"], "no-effect value": f"{P.copy_quantile * 100:g}",
             "finding": copy_word},
            {"audit": "privacy", "generator": g, "setting": setting, "measure": "attack AUC, pixel / feature",
             "value (mean ± 95% CI)": texts["mia_auc"], "no-effect value": f"0.5 (copier {copier:.3f})",
             "finding": leak_word}]
        lines.append(f"- `{g}`, {setting}: copy rate {texts['copy_rate']}% (pixel / feature): {copy_word}; "
                     f"attack AUC {texts['mia_auc']}: {leak_word}.")
lines.append(f"\nA generator that does not copy scores a copy rate of about {P.copy_quantile:.0%} and an AUC of "
             f"0.5; a finding is stated only where the whole 95% CI lies beyond those values. The whole-pool models "
             f"are measured in pixel space only (the domain classifier was trained on their members, not on the "
             f"held-out validation images), and their intervals cover sampling only (one trained model each).")
lines.append("\n**Bias.**")
how = {"higher": "the minority gains", "lower": "the minority loses", "tie": "no change beyond the CI"}
for row in amplification.itertuples():
    minority = changes["minority"].loc[(row.generator, row.arm)]
    majority = changes["majority"].loc[(row.generator, row.arm)]
    detail = (f"minority accuracy {minority.change * 100:+.1f} ± {minority.change_ci * 100:.1f} pts "
              f"({how[minority.direction]}), majority {majority.change * 100:+.1f} ± "
              f"{majority.change_ci * 100:.1f} pts")
    summary_rows.append({"audit": "bias", "generator": row.generator, "setting": f"{row.arm} vs real",
                         "measure": "majority − minority accuracy gap (pts), synthetic vs real → change",
                         "value (mean ± 95% CI)": f"{pts(row.arm_mean, row.arm_ci)} vs "
                                                  f"{pts(row.reference_mean, row.reference_ci)} → "
                                                  f"{pts(row.change, row.change_ci)}",
                         "no-effect value": "0", "finding": f"{row.verdict}; {detail}"})
    lines.append(f"- `{row.generator}`, {row.arm}: majority − minority accuracy gap {row.arm_mean * 100:.1f} pts vs "
                 f"{row.reference_mean * 100:.1f} pts on the same real data; change {row.change * 100:+.1f} ± "
                 f"{row.change_ci * 100:.1f} pts → **{row.verdict}**; {detail}.")
for g, group in bias_table.groupby("generator"):
    for sampling in ("uniform", "frequencies"):
        judged = ci(group[f"{sampling}_judged"])[0]
        ratio, low, high = ci(group[f"{sampling}_judged_over_expected"], scale=1, digits=2)
        word = ("fewer minority-looking samples than a perfect generator would give" if high < 1 else
                "more minority-looking samples than a perfect generator would give" if low > 1 else
                "as many minority-looking samples as a perfect generator would give (within the CI)")
        summary_rows.append({"audit": "bias", "generator": g, "setting": f"labels drawn {sampling}",
                             "measure": "judged minority share ÷ expected from a perfect generator",
                             "value (mean ± 95% CI)": ratio, "no-effect value": "1", "finding": word})
        lines.append(f"- `{g}`, labels drawn {sampling}: {judged}% of the samples are judged minority classes, "
                     f"{ratio}× a perfect generator's share: {word}.")
display(Markdown("\n".join(lines)))
summary = run.write_table(summary_rows, name="summary.csv")   # the README's audits table (synthstudy.report)

# %% [markdown]
# ### Reading these numbers
# - The copy rate and the attack are calibrated by construction: fresh images from the data distribution score
#   about `copy_quantile` and 0.5, whatever N or the space. Distances in pixel space also reward blurry samples
#   (an average image is near many training images), which is why the ratio to held-out images and the feature
#   space are reported beside them: a copy is near *its* training image, not near unseen ones.
# - The attack here is the simplest black-box one (nearest sample). A stronger attacker (with the generator's
#   weights or its latent space) can only do better, so an AUC of 0.5 here is not a proof of privacy.
# - `pca_gaussian` is linear: at small N its principal components are spanned by the few training images, so
#   its samples live in their span; that is memorisation in the plainest form, and it fades as N grows. The
#   learned families (`cvae`, `cgan`, `flow`) are audited here only as the whole-pool models the study uses
#   (`audit_zoo`, trained once by the generators notebook); the N sweep and the bias audit train one model per
#   (N, seed) and per seed, minutes to tens of minutes each on 2 CPU cores, so the `full` profile runs them for
#   every family.
# - The bias arms share the architecture, the step budget and augmentation; only the data source differs. A gap
#   that is also large for the judge (trained on balanced data) is partly intrinsic class difficulty, which is
#   why the verdict compares with the real imbalanced arm seed by seed instead of with zero.
