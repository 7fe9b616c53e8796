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
# real training images and scored on the held-out test split. Each N is run with several seeds (the seed picks
# both the subset and the initialisation), and the curve shows the mean with a 95% confidence interval.
#
# **The budget follows N.** A fixed step count would give N = 100 hundreds of epochs and the whole pool a fraction
# of one, so the large-N end would be under-trained and flat. Each cell trains `epochs` passes over its N images,
# clipped to [`min_steps`, `max_steps`] (`train.steps_for_size`: its docstring has the measurements behind it);
# every arm of the study at a given N gets the same budget.
#
# **The budget check.** At the sizes in `budget_check_sizes` the same cells run again at twice the budget and are
# scored on *validation*: the arm is "at plateau" only when doubling moves validation accuracy by less than its
# 95% CI; otherwise the notebook states the gap. The test split is never used to choose anything.
#
# **Run it:** Run All in JupyterLab uses the defaults below (the `quick` profile). From the command line,
# `make reproduce` runs it with `configs/quick.yaml`; `PROFILE=smoke` or `PROFILE=paper` picks another profile.
# Finished cells are recorded under `results/<profile>/baseline/` and skipped on rerun.

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/baseline; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 | imagefolder (cifar10: allow_download or files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
data_root: str = ""               # dataset imagefolder only: a folder per class; empty means $SYNTHSTUDY_IMAGEFOLDER
image_size: int = 64              # dataset imagefolder only: images resized to this many pixels a side
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # one training run per seed and size; at least 3 for a 95% CI
train_sizes: list = [100, 1000, "all"]   # N real images (stratified); "all" is the whole pool (paper: six N)
val_size: int = 5000              # images carved from train for selection and the budget check; never trained on
model: str = "cnn"                # classifier from synthstudy.models (cnn, cnn_wide, timm:<arch>)
epochs: float = 20.0              # passes over the N images per cell ... (budget rule: train.steps_for_size)
min_steps: int = 300              # ... but at least this many steps (small N saturates by ~250-500 steps) ...
max_steps: int = 2500             # ... and at most this many (the whole pool: 92.7% validation at 2,000 steps)
budget_check_sizes: list = [1000, "all"]   # N rerun at twice the budget, scored on validation (a subset of
                                  # train_sizes; the whole pool costs 2x its 2,500 steps per seed)
batch_size: int = 128             # images per step (the `make bench` recipe)
lr: float = 0.1                   # peak one-cycle learning rate (SGD, Nesterov)
augment: str = "flip_crop"        # none | flip | crop | flip_crop | flip_crop_erase (no flips for digits)
tta: str = "flip_shift"           # test-time views: none | flip | flip_shift (measured: +0.3 pts over flip, whole pool)
progress: bool = True             # tqdm progress bars

# %%
import functools

from IPython.display import Markdown, display

from synthstudy import analysis_scaling, cells, config, metrics, plots, runs, train

P = config.from_namespace(config.BaselineParams, globals())
ctx = cells.context(P.dataset, P.val_size, P.allow_download, P.data_root, P.image_size)
run = runs.Run("baseline", P.profile, P.model_dump(), device=str(train.resolve_device(P.device)))
budgets = {n: P.steps_for(n) for n in P.resolved_sizes()}
print(f"{ctx.splits.name}: {len(ctx.pool)} training images in the pool, {P.val_size} for validation, "
      f"{len(ctx.splits.test)} test; steps per N: {budgets}; results in {run.dir}")

# %% [markdown]
# ## The grid: sizes × seeds, then the budget check
# One cell trains one classifier (`cells.classifier`, the function every notebook's classifier cells use). Its
# record holds validation and test accuracy, the steps and images seen, training time and the indices of the
# subset it saw (`indices.npy`), so any number here can be traced back to its images.

# %%
keys = cells.baseline_keys(P)
records = run.grid(keys, functools.partial(cells.classifier, **cells.runtime(P)),
                   progress=P.progress,
                   describe=lambda k, m: f"n={k['n']} seed={k['seed']} steps={k['steps']}: "
                                         f"val {m['val_accuracy']:.2%} test {m['test_accuracy']:.2%}")
table = run.write_table([runs.flatten(r) for r in records])

# %% [markdown]
# ## Accuracy vs N (mean ± 95% CI over seeds)

# %%
grid = analysis_scaling.main_cells(table)
summary = metrics.summarize(grid, by=["n", "steps"], value="test_accuracy")
summary["test accuracy (%)"] = [metrics.format_ci(m, h) for m, h in zip(summary["mean"], summary["ci"])]
val_summary = metrics.summarize(grid, by="n", value="val_accuracy")
summary["validation accuracy (%)"] = [metrics.format_ci(m, h) for m, h in zip(val_summary["mean"], val_summary["ci"])]
run.write_table(summary[["n", "steps", "test accuracy (%)", "validation accuracy (%)", "seeds"]].to_dict("records"),
                name="summary.csv")
display(summary[["n", "steps", "test accuracy (%)", "validation accuracy (%)", "seeds"]])
fig = plots.accuracy_vs_size(summary, x="n")
fig.axes[0].set_title(f"{P.dataset}: real-data baseline ({P.model}, {P.epochs:g} epochs in "
                      f"[{P.min_steps}, {P.max_steps}] steps × {P.batch_size})")
plots.save(fig, "baseline_accuracy_vs_n", run.dir)

# %% [markdown]
# ## Budget check: is the real arm at its plateau?

# %%
checks = analysis_scaling.budget_checks(table, P.budget_sizes())
run.write_table(checks.to_dict("records"), name="budget_check.csv")
display(Markdown("\n".join(f"- {v}" for v in checks["verdict"]) or "no budget check requested"))

# %% [markdown]
# ## Reading the curve
# Each doubling of N buys less accuracy: the curve is roughly linear in log N until it saturates. This is
# the yardstick for the synthetic arms: a generator trained on N images is "worth" N' real images if its
# synthetic-data classifier reaches the accuracy the real curve has at N'. Where the budget check says the
# largest N is not at its plateau, the curve's top end is a lower bound; `make bench` reports longer budgets.
