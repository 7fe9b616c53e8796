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
# # Multiview: contrastive learning from generated views
#
# The seed paper's central idea: a class-conditional generator gives positive pairs for contrastive learning by
# decoding two nearby latent codes of the same class, **z and z + σ·ε**, instead of (or besides) two pixel
# augmentations of one image. Too small a σ gives views that are nearly identical (nothing to be invariant to);
# too large a σ gives views that no longer share content. The paper reports an interior optimum. Here that claim
# is measured, not assumed, at laptop scale.
#
# Every arm trains the same encoder (the `model` registry backbone plus an MLP projection head) for the same
# number of steps and pairs per step, and is scored the same way: a **linear probe** and a **k-NN classifier** on
# the frozen backbone features, both fitted on real pool images (the train split minus the validation holdout) and
# scored on the real test split. The test split is never used to fit or choose anything: σ* (the σ the method
# table uses) is chosen on the validation holdout.
#
# 1. **σ sweep** — SimCLR on latent views only, one curve over σ with 95% CIs.
# 2. **Method table** — real-data SimCLR and SupCon (pixel augmentations), synthetic SimCLR with pixel / latent /
#    latent + pixel views, synthetic SupCon; an untrained encoder as the floor; ratios to real SimCLR.
# 3. **Unique latent anchors** — a fixed pool of M latents vs fresh latents every step (online).
# 4. **What a view pair looks like** at each σ.
#
# **Run it:** Run All uses the defaults below (the `quick` profile); `make reproduce` runs it after the
# generators notebook, which trains and caches the generator this notebook loads. Finished cells are recorded
# under `results/<profile>/multiview/` and skipped on rerun.

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/multiview; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 (cifar10 needs allow_download or local files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # one encoder per seed and arm (init, batches, latents); at least 3 for a 95% CI
val_size: int = 5000              # images carved from train; sigma* is chosen on them, never on the test split
model: str = "cnn"                # encoder backbone from synthstudy.models (cnn, cnn_wide, timm:<arch>)
generator: str = "cgan"           # generator family giving the views (pca_gaussian | cvae | cgan | flow)
gen_steps: dict = {"pca_gaussian": 1, "cvae": 800, "cgan": 1200, "flow": 2400}   # training steps per family;
                                  # shared with the generators notebook so both load one cached model
gen_seed: int = 0                 # seed of the generator's training run (shared with the generators notebook)
mv_steps: int = 60                # contrastive optimizer steps per arm, the same for every arm; short so the
                                  # 27 trained encoders fit about 7 min on 2 cores (far from converged)
mv_batch_size: int = 64           # pairs per step (the encoder sees twice as many images per step)
mv_lr: float = 0.1                # peak one-cycle learning rate (SGD, Nesterov) of the contrastive training
mv_temperature: float = 0.2       # softmax temperature of NT-Xent / SupCon; lower weighs hard negatives more
sigmas: list = [0.0, 0.5, 2.0]    # latent view distances swept, in prior standard deviations; 0 is identical views
latent_truncation: float = 0.0    # |z| bound for latent views in prior standard deviations; 0 means off
anchor_pools: list = [500]        # sizes M of fixed latent-anchor pools compared with online (fresh latents)
mv_probe_size: int = 5000         # real pool images (stratified) the linear probe and k-NN are fitted on; or "all"
mv_eval_size: int = 2000          # images (stratified) of validation and of test that are scored; or "all"
mv_knn_k: int = 20                # neighbours in the k-NN vote (cosine similarity)
progress: bool = True             # tqdm progress bars

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from synthstudy import config, contrastive, data, generators, metrics, plots, runs, train

P = config.from_namespace(config.MultiviewParams, globals())
splits = data.load(P.dataset, allow_download=P.allow_download)
pool, val = data.holdout(splits.train, P.val_size, seed=0)
run = runs.Run("multiview", P.profile, P.model_dump(), device=str(train.resolve_device(P.device)))


def stratified(split, size):
    """A fixed stratified subset (seed 0, the same for every arm), or the whole split."""
    if size == "all" or size >= len(split):
        return split
    return split.take(data.stratified_indices(split.labels.numpy(), size, seed=0))


probe_set = stratified(pool, P.mv_probe_size)
score_sets = {"val": stratified(val, P.mv_eval_size), "test": stratified(splits.test, P.mv_eval_size)}
augment = contrastive.PixelAugment.for_dataset(P.dataset, splits.image_shape[-1])
gen, gen_idx = generators.fit_on_subset(P.generator, pool, dataset=P.dataset, n="all", subset_seed=0,
                                        steps=P.gen_steps[P.generator], seed=P.gen_seed, config={},
                                        device=P.device, progress=P.progress)
gen = gen.to(train.resolve_device(P.device))   # decode views where the encoder trains (a no-op on CPU)
print(f"{splits.name}: {len(pool)} pool images (real arms, generator), {len(val)} validation, {len(splits.test)} "
      f"test; probe fitted on {len(probe_set)} pool images, scored on {len(score_sets['val'])} val / "
      f"{len(score_sets['test'])} test images\ngenerator {P.generator} ({P.gen_steps[P.generator]} steps, latent "
      f"dim {gen.latent_dim}); pixel augmentation {augment}; results in {run.dir}")

# %% [markdown]
# ## One cell = one encoder
# A cell trains one encoder on one view source and records its probe and k-NN accuracy on validation and test.
# Its key holds everything that determines the result, so a cell shared by two experiments (the online arm at σ*
# is in the sweep, the method table and the anchor study) runs once. Real arms' keys leave the generator out:
# changing the generator does not retrain them.

# %%
def cell_key(source, method, views, seed, sigma=None, anchors=None):
    synthetic = source == "synthetic"
    return {"dataset": P.dataset, "model": P.model, "source": source, "method": method, "views": views,
            "sigma": sigma, "anchors": anchors, "seed": seed,
            "generator": P.generator if synthetic else None,
            **(generators.cell_key(P.generator, P.gen_steps[P.generator], P.gen_seed) if synthetic
               else dict.fromkeys(["gen_steps", "gen_seed", "gen_identity"])),
            "truncation": P.latent_truncation if synthetic else None,
            "steps": P.mv_steps, "batch_size": P.mv_batch_size, "lr": P.mv_lr, "temperature": P.mv_temperature,
            "val_size": P.val_size, "probe_size": P.mv_probe_size, "eval_size": P.mv_eval_size, "knn_k": P.mv_knn_k}


def run_cell(key, cell_dir):
    encoder = contrastive.create_encoder(P.model, splits.image_shape[0], splits.image_shape[-1], seed=key["seed"],
                                         num_classes=splits.num_classes)
    out = {"train_seconds": 0.0, "pairs_per_s": float("nan"), "final_loss": float("nan")}
    if key["source"] != "none":                  # "none": the untrained encoder, the floor every arm must beat
        views = contrastive.make_views(
            key["views"], real=pool if key["source"] == "real" else None,
            gen=gen if key["source"] == "synthetic" else None, sigma=key["sigma"] or 0.0,
            truncation=P.latent_truncation, anchors=key["anchors"], augment=augment, seed=key["seed"])
        cfg = contrastive.ContrastiveConfig(method=key["method"], steps=P.mv_steps, batch_size=P.mv_batch_size,
                                            lr=P.mv_lr, temperature=P.mv_temperature, seed=key["seed"],
                                            device=P.device, progress=P.progress)
        result = contrastive.fit(encoder, views, cfg)
        encoder = result.encoder
        out.update(train_seconds=result.seconds, pairs_per_s=result.pairs_per_s, final_loss=result.losses[-1][1])
    scores, _ = contrastive.evaluate(encoder, probe_set, score_sets, knn_k=P.mv_knn_k)
    return {**scores, **out}


def describe(k, m):
    what = f"{k['source']} {k['method']} {k['views']}" + (f" sigma={k['sigma']}" if k["sigma"] is not None else "")
    what += f" anchors={k['anchors']}" if k["anchors"] else ""
    return f"{what} seed={k['seed']}: probe {m['probe_accuracy_test']:.2%}, kNN {m['knn_accuracy_test']:.2%}"


all_records = {}


def grid(keys):
    records = run.grid(keys, run_cell, progress=P.progress, describe=describe)
    all_records.update({runs.stable_hash(r["key"]): r for r in records})
    return pd.DataFrame([runs.flatten(r) for r in records])


def summary_of(frame, by, value="probe_accuracy_test"):
    s = metrics.summarize(frame, by=by, value=value)
    s[f"{value} (%)"] = [metrics.format_ci(m, h) for m, h in zip(s["mean"], s["ci"])]
    return s

# %% [markdown]
# ## 1. σ sweep: SimCLR on latent views only
# Views are G(z, y) and G(z + σ·ε, y), no pixel augmentation, fresh latents every step. σ = 0 makes both views
# the same image (instance discrimination without any invariance to learn). The bands for real-data SimCLR and the
# untrained encoder are drawn from the method table's cells.

# %%
sweep = grid([cell_key("synthetic", "simclr", "latent", s, sigma=float(sigma))
              for sigma in P.sigmas for s in P.seeds])
refs = grid([cell_key("real", "simclr", "pixel", s) for s in P.seeds]
            + [cell_key("none", "none", "none", s) for s in P.seeds])
sweep_val = summary_of(sweep, "sigma", "probe_accuracy_val")
sigma_star = float(sweep_val.loc[sweep_val["mean"].idxmax(), "sigma"])      # chosen on validation only
sweep_test = summary_of(sweep, "sigma")
sweep_knn = summary_of(sweep, "sigma", "knn_accuracy_test")
shown = sweep_test[["sigma", "probe_accuracy_test (%)", "seeds"]].assign(
    **{"kNN test (%)": sweep_knn["knn_accuracy_test (%)"], "probe val (%)": sweep_val["probe_accuracy_val (%)"]})
display(shown)

fig = plots.accuracy_vs_size(sweep_test, x="sigma", logx=False, label="linear-probe test accuracy (%)")
ax = fig.axes[0]
ax.lines[0].set_label("synthetic SimCLR (latent views)")
for (source, label), color in zip([("real", "real SimCLR (pixel views)"), ("none", "untrained encoder")],
                                  ["tab:green", "tab:gray"]):
    mean, half = metrics.mean_ci(refs.loc[refs["source"] == source, "probe_accuracy_test"])
    ax.axhspan((mean - half) * 100, (mean + half) * 100, color=color, alpha=0.2)
    ax.axhline(mean * 100, color=color, ls="--", label=label)
ax.axvline(sigma_star, color="k", lw=0.8, ls=":", label=f"σ* = {sigma_star:g} (best on validation)")
ax.set_xlabel("σ (latent view distance, prior standard deviations)")
ax.set_title(f"{P.dataset}: SimCLR on {P.generator} latent views ({P.mv_steps} steps × {P.mv_batch_size} pairs)")
ax.legend(fontsize=8)
plots.save(fig, "multiview_sigma_sweep", run.dir)

# %% [markdown]
# **Is there an interior optimum?** The test below asks whether the best σ beats *both* ends of the swept range
# with non-overlapping evidence (Welch's t-test at 95%, `metrics.compare`); a tie with either end means this
# budget cannot tell.

# %%
by_sigma = {s: g["probe_accuracy_test"].to_numpy() for s, g in sweep.groupby("sigma")}
best = max(by_sigma, key=lambda s: by_sigma[s].mean())
ends = [min(by_sigma), max(by_sigma)]
verdicts = {e: metrics.compare(by_sigma[best], by_sigma[e]) for e in ends if e != best}
interior = best not in ends and all(v == "higher" for v in verdicts.values())
print(f"best sigma on test: {best:g}; vs the ends {verdicts}; "
      f"interior optimum {'supported' if interior else 'not supported at this budget'}; sigma* (validation) = {sigma_star:g}")

# %% [markdown]
# ## 2. Method table (same encoder, same budget)
# The latent arms use σ* from the validation sweep. Ratio = mean probe accuracy / mean of real-data SimCLR;
# "vs real SimCLR" is Welch's t-test at 95% (a tie when the evidence overlaps).

# %%
ARMS = [  # (label, source, method, views, sigma)
    ("untrained encoder", "none", "none", "none", None),
    ("real · SimCLR · pixel", "real", "simclr", "pixel", None),
    ("real · SupCon · pixel", "real", "supcon", "pixel", None),
    ("synthetic · SimCLR · pixel", "synthetic", "simclr", "pixel", None),
    ("synthetic · SimCLR · latent (σ*)", "synthetic", "simclr", "latent", sigma_star),
    ("synthetic · SimCLR · latent+pixel (σ*)", "synthetic", "simclr", "latent_pixel", sigma_star),
    ("synthetic · SupCon · latent+pixel (σ*)", "synthetic", "supcon", "latent_pixel", sigma_star),
]
method_frames = []
for label, source, method, views, sigma in ARMS:
    frame = grid([cell_key(source, method, views, s, sigma=sigma) for s in P.seeds])
    method_frames.append(frame.assign(arm=label))
methods_table = pd.concat(method_frames, ignore_index=True)
real_simclr = methods_table.loc[methods_table["arm"] == "real · SimCLR · pixel", "probe_accuracy_test"].to_numpy()
rows = []
for label, *_ in ARMS:
    g = methods_table[methods_table["arm"] == label]
    probe, knn = metrics.mean_ci(g["probe_accuracy_test"]), metrics.mean_ci(g["knn_accuracy_test"])
    rows.append({"arm": label, "linear probe, test (%)": metrics.format_ci(*probe),
                 "k-NN, test (%)": metrics.format_ci(*knn), "probe val (%)": metrics.format_ci(
                     *metrics.mean_ci(g["probe_accuracy_val"])),
                 "ratio to real SimCLR": f"{probe[0] / real_simclr.mean():.3f}",
                 "vs real SimCLR": metrics.compare(g["probe_accuracy_test"], real_simclr),
                 "train s / cell": f"{g['train_seconds'].mean():.0f}", "seeds": len(g)})
method_summary = run.write_table(rows, name="summary.csv")   # the README's multiview table (synthstudy.report)
display(method_summary)

summary = metrics.summarize(methods_table, by="arm", value="probe_accuracy_test").set_index("arm").loc[
    [a[0] for a in ARMS]]
plots.style()
fig, ax = plt.subplots(figsize=(7, 3.8))
y = np.arange(len(summary))[::-1]
colors = ["tab:gray"] + ["tab:green"] * 2 + ["tab:blue"] * (len(summary) - 3)    # floor, real, synthetic
ax.barh(y, summary["mean"] * 100, xerr=summary["ci"].fillna(0) * 100, color=colors, alpha=0.8, capsize=3)
ax.set_yticks(y, summary.index)
ax.set_xlim(max(0, summary["ci_low"].min() * 100 - 3), min(100, summary["ci_high"].max() * 100 + 2))
ax.axvline(real_simclr.mean() * 100, color="k", lw=0.8, ls="--")
ax.set_xlabel("linear-probe test accuracy (%, mean ± 95% CI)")
ax.set_title(f"{P.dataset}: methods at σ* = {sigma_star:g} ({P.mv_steps} steps × {P.mv_batch_size} pairs)")
fig.tight_layout()
plots.save(fig, "multiview_methods", run.dir)

# %% [markdown]
# ## 3. How many unique latent anchors?
# SimCLR on latent views at σ*, with a fixed pool of M anchor latents (balanced classes, drawn once per seed)
# against fresh latents every step ("online": steps × batch unique anchors). Only the neighbour noise is new when
# a pooled anchor comes back. Does the generator's unlimited supply of anchors matter, or only the views?

# %%
pool_keys = [cell_key("synthetic", "simclr", "latent", s, sigma=sigma_star, anchors=m)
             for m in P.anchor_pools for s in P.seeds]
online_keys = [cell_key("synthetic", "simclr", "latent", s, sigma=sigma_star) for s in P.seeds]
anchors_table = grid(pool_keys + online_keys)
online_n = P.mv_steps * P.mv_batch_size
anchors_table["unique anchors"] = anchors_table["anchors"].fillna(online_n).astype(int)
anchors_table["kind"] = np.where(anchors_table["anchors"].isna(), "online", "fixed pool")
anchor_summary = summary_of(anchors_table, ["kind", "unique anchors"])
display(anchor_summary[["kind", "unique anchors", "probe_accuracy_test (%)", "seeds"]])
plots.style()
fig, ax = plt.subplots(figsize=(6, 4))
for kind, fmt, color in [("fixed pool", "o-", "tab:blue"), ("online", "s", "tab:red")]:
    g = anchor_summary[anchor_summary["kind"] == kind].sort_values("unique anchors")
    ax.errorbar(g["unique anchors"], g["mean"] * 100, yerr=g["ci"].fillna(0) * 100, fmt=fmt, color=color,
                capsize=4, label=kind if kind != "online" else f"online ({online_n} fresh latents)")
ax.set_xscale("log")
ax.margins(x=0.15)
ax.set_xlabel("unique latent anchors seen in training")
ax.set_ylabel("linear-probe test accuracy (%)")
ax.set_title(f"{P.dataset}: fixed anchor pool vs online (σ* = {sigma_star:g})")
ax.legend(fontsize=8)
fig.tight_layout()
plots.save(fig, "multiview_anchors", run.dir)

# %% [markdown]
# ## 4. View pairs per σ
# Top row: anchors G(z, y), one per class. Each row below decodes z + σ·ε with the *same* ε, so rows differ only in
# σ: how far a positive may drift before it stops being the same object.

# %%
classes = torch.arange(splits.num_classes)
pairs = contrastive.view_pairs(gen, P.sigmas, classes, seed=0, truncation=P.latent_truncation)
fig, axes = plt.subplots(len(pairs), len(classes), figsize=(0.8 * len(classes), 0.85 * len(pairs)), squeeze=False)
for r, row in enumerate(pairs):
    for c, img in enumerate(row):
        ax = axes[r, c]
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        if c == 0:
            ax.set_ylabel("anchor" if r == 0 else f"σ={P.sigmas[r - 1]:g}", rotation=0, ha="right", va="center")
        if r == 0:
            ax.set_title(str(splits.classes[c])[:8], fontsize=7)
fig.suptitle(f"{P.generator} latent views on {P.dataset}", y=1.0)
fig.tight_layout()
plots.save(fig, "multiview_view_pairs", run.dir)

# %% [markdown]
# ## The tidy table
# One row per cell (every experiment above), written to `metrics.csv` in the run folder.

# %%
table = run.write_table([runs.flatten(r) for r in all_records.values()])
print(f"{len(table)} cells, {table['train_seconds'].sum():.0f} s of contrastive training in total")

# %% [markdown]
# ## Conclusions from this run (generated from the cells above; a difference inside the CI is a tie)

# %%
floor = methods_table.loc[methods_table["arm"] == "untrained encoder", "probe_accuracy_test"]
learned = [label for label, *_ in ARMS[1:]
           if metrics.compare(methods_table.loc[methods_table["arm"] == label, "probe_accuracy_test"], floor)
           == "higher"]
online_scores = anchors_table.loc[anchors_table["kind"] == "online", "probe_accuracy_test"]
anchor_verdicts = {int(m): metrics.compare(g["probe_accuracy_test"], online_scores)
                   for m, g in anchors_table[anchors_table["kind"] == "fixed pool"].groupby("unique anchors")}
lines = [f"- **σ sweep:** best σ on test {best:g}, σ* on validation {sigma_star:g}; an interior optimum is "
         f"{'supported' if interior else 'not supported at this budget'} (best vs the ends: "
         + ", ".join(f"vs σ={e:g} {v}" for e, v in verdicts.items()) + ").",
         "- **Methods vs real-data SimCLR:** " + "; ".join(
             f"{r['arm']}: {r['vs real SimCLR']} (ratio {r['ratio to real SimCLR']})" for _, r in
             method_summary.iloc[2:].iterrows()) + ".",
         "- **Above the untrained encoder** (the floor): " + (", ".join(learned) if learned else
                                                              "no method, so this budget is too short to rank them") + ".",
         "- **Anchors:** " + "; ".join(f"a fixed pool of {m} vs online: {v}" for m, v in anchor_verdicts.items()) + "."]
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## Reading the results
# - The **σ sweep** is the seed's claim under test: an interior optimum means views must differ, but not too much.
#   The verdict above is computed from the seeds, and a tie is reported as a tie.
# - The **method table** puts each synthetic arm against real-data SimCLR at the same budget (ratio and test). The
#   untrained encoder is the floor: small CNNs with random weights already give strong linear probes on small grey
#   images, so only the gain above that row is learned.
# - SupCon uses labels, so it is a supervised upper reference, not a self-supervised method; on synthetic data its
#   labels are the generator's conditioning classes.
# - The `quick` profile trains for seconds per encoder; its absolute numbers are far from converged, and
#   orderings can change with longer training (the `full` profile).
