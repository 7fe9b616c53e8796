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
# # Baseline: how test accuracy grows with the number of real training images
#
# Every later question in synthstudy ("is a generator trained on N real images worth more than the N images
# themselves?") is measured against this curve. Here a classifier is trained on a stratified, seeded subset of N
# real training images, with one fixed recipe and one fixed step budget for every N, and scored on the held-out
# test split. Each N is run with several seeds (the seed picks both the subset and the initialisation), and the
# curve shows the mean with a 95% confidence interval (Student's t over seeds).
#
# **Run it:** Run All in JupyterLab uses the defaults below (the `quick` profile). From the command line,
# `make reproduce` runs it with `configs/quick.yaml`; `PROFILE=smoke` or `PROFILE=full` picks another profile.
# Finished cells are recorded under `results/<profile>/baseline/` and skipped on rerun.

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/baseline; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 (cifar10 needs allow_download or local files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # one training run per seed and size; at least 3 for a 95% CI
train_sizes: list = [100, 300, 1000, 3000, 10000, "all"]   # N real images (stratified); "all" is the whole pool
val_size: int = 5000              # images carved from train for model selection; test split never used for that
model: str = "cnn"                # classifier from synthstudy.models (cnn, cnn_wide, timm:<arch>)
steps: int = 150                  # optimizer steps per cell, the same for every N (images seen: steps x batch);
                                  # short so 18 cells take ~5 min on 2 cores: large N is under-trained here
batch_size: int = 128             # images per step (the `make bench` recipe)
lr: float = 0.1                   # peak one-cycle learning rate (SGD, Nesterov)
augment: str = "flip_crop"        # none | flip | crop | flip_crop | flip_crop_erase (no flips for digits);
                                  # translations matter at small N, where 150 steps are many epochs
tta: str = "flip"                 # test-time views: none | flip | flip_shift (6 views: slower to evaluate)
progress: bool = True             # tqdm progress bars

# %%
import numpy as np
import pandas as pd
from IPython.display import display

from synthstudy import config, data, metrics, models, plots, runs, sources, train

P = config.from_namespace(config.BaselineParams, globals())
splits = data.load(P.dataset, allow_download=P.allow_download)
pool, val = data.holdout(splits.train, P.val_size, seed=0)
run = runs.Run("baseline", P.profile, P.model_dump(), device=str(train.resolve_device(P.device)))
print(f"{splits.name}: {len(pool)} training images in the pool, {P.val_size} for validation, "
      f"{len(splits.test)} test; results in {run.dir}")

# %% [markdown]
# ## The grid: sizes × seeds
# One cell trains one classifier. Its record holds test and validation accuracy, training time and the
# indices of the subset it saw (`indices.npy`), so any number here can be traced back to its images.

# %%
def run_cell(key, cell_dir):
    idx = data.stratified_indices(pool.labels.numpy(), key["n"], seed=key["seed"])
    runs.save_npy(cell_dir / "indices.npy", idx)
    cfg = P.train_config(seed=key["seed"], device=P.device, progress=P.progress)
    net = models.create_model(P.model, splits.image_shape[0], splits.num_classes, splits.image_shape[-1],
                              seed=key["seed"])
    result = train.fit(net, sources.ImageSetSource(pool.take(idx)), cfg)
    out = {"test_accuracy": train.evaluate(result.model, splits.test, cfg)["accuracy"],
           "train_seconds": result.seconds, "images_per_s": result.images_per_s}
    if val is not None:
        out["val_accuracy"] = train.evaluate(result.model, val, cfg)["accuracy"]
    return out


keys = [{"dataset": P.dataset, "model": P.model, "n": n, "seed": s, "val_size": P.val_size,
         "steps": P.steps, "batch_size": P.batch_size, "lr": P.lr, "augment": P.augment, "tta": P.tta}
        for n in P.resolved_sizes() for s in P.seeds]
records = run.grid(keys, run_cell, progress=P.progress,
                   describe=lambda k, m: f"n={k['n']} seed={k['seed']}: test {m['test_accuracy']:.2%}")
table = run.write_table([runs.flatten(r) for r in records])

# %% [markdown]
# ## Accuracy vs N (mean ± 95% CI over seeds)

# %%
summary = metrics.summarize(table, by="n", value="test_accuracy")
summary["test accuracy (%)"] = [metrics.format_ci(m, h) for m, h in zip(summary["mean"], summary["ci"])]
display(summary[["n", "test accuracy (%)", "seeds"]])
fig = plots.accuracy_vs_size(summary, x="n")
fig.axes[0].set_title(f"{P.dataset}: real-data baseline ({P.model}, {P.steps} steps × {P.batch_size})")
plots.save(fig, "baseline_accuracy_vs_n", run.dir)

# %% [markdown]
# ## Reading the curve
# Each doubling of N buys less accuracy: the curve is roughly linear in log N until it saturates. This is
# the yardstick for the synthetic arms: a generator trained on N images is "worth" N' real images if its
# synthetic-data classifier reaches the accuracy the real curve has at N'. The fixed step budget is short
# (the `quick` profile's), so the large-N end is under-trained; `make bench` reports the long-budget number.
