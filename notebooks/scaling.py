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
# # Scaling: training on real vs synthetic data across sample sizes
#
# **Given N real images, is it better to train on them, on a generator trained on them, or on both?** A generator
# streams as many images as one asks for; the question is whether those images are worth anything beyond the N
# real ones it learned from. Every arm below trains the same classifier, with the same budget at that N (the
# baseline's rule: `epochs` passes over N images within [`min_steps`, `max_steps`]), learning rate, augmentation,
# test-time views and initialisation seed; they differ **only in where the batches come from**:
#
# | arm | batches come from |
# |---|---|
# | **real** | the N real images (a stratified subset of the pool; the baseline's cells, reused) |
# | **pool** (fixed) | M unique samples drawn once from the generator trained on those same N images, M = multiple × N |
# | **stream** (online) | fresh samples every step: the "unlimited data" claim |
# | **real + synthetic** | the real arm's *whole* real batch plus fresh samples, a share α of the combined batch: the
# classifier sees exactly as many real images as the real arm, so a difference is what the synthetic ones add |
#
# **Seeds and pairing.** A seed picks the real subset, the classifier's initialisation and the batch order. The
# generator of a (N, seed) cell is fitted on *that seed's subset*, so its CI includes generator-training noise, and
# every arm shares the seed with the real arm: arms are compared by their per-seed differences (paired t), all the
# notebook's comparisons are Holm-corrected together, and "equivalent" needs two one-sided tests against the
# `equivalence_margin`; otherwise the verdict is "inconclusive".
#
# **The effective-data multiplier.** A synthetic arm at N "is worth" N_eff real images where the real curve (the
# baseline's sizes, its cells reused) reaches the arm's accuracy. It is given only where the real curve rises
# significantly between the two sizes around it (on a flat stretch any multiplier would fit the noise), with a
# bootstrap CI over the seeds of both curves; elsewhere the table says why not.
#
# **Run it:** Run All uses the defaults below (the `quick` profile); `make reproduce` runs it after the baseline
# and generators notebooks, whose records and cached generators it reuses. Finished cells are recorded under
# `results/<profile>/scaling/` and skipped on rerun.

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/scaling; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 | imagefolder (cifar10: allow_download or files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
data_root: str = ""               # dataset imagefolder only: a folder per class; empty means $SYNTHSTUDY_IMAGEFOLDER
image_size: int = 64              # dataset imagefolder only: images resized to this many pixels a side
pretrained_path: str = ""         # a pretrained generator's local weights folder (README: pretrained generators)
allow_cpu_pretrained: bool = False   # consent to run a GPU-sized pretrained generator on the CPU (slow)
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # each picks the real subset, the generator it trains, init, batch order; 3+ for a CI
val_size: int = 5000              # images held out of the pool (validation); no arm trains on them
train_sizes: list = [100, 1000, "all"]   # the real curve the multiplier is read off (the
                                  # baseline's sizes: its cells are reused, not retrained)
budget_check_sizes: list = [1000, "all"]   # the baseline's budget check, reused and printed here
scaling_sizes: list = [1000]   # N of the synthetic arms: small N, where a generator could add most
scaling_generators: list = ["pca_gaussian", "flow"]   # a baseline family and the best learned one (CAS), each
                                  # refit on every N-image subset and seed (flow: about a minute per fit)
gen_steps: dict = {"pca_gaussian": 1, "cvae": 800, "cgan": 1200, "flow": 2400}   # training steps per family;
                                  # shared with the generators notebook so N "all" loads its cached models
gen_seed: int = 0                 # seed of every generator fit (shared with the other notebooks: same cache)
pool_multiples: list = []         # fixed-pool arm, M in multiples of N (clipped to steps x batch); empty in quick:
                                  # the paper profile runs pools, multiview asks the unique-samples question
mix_fractions: list = [0.5]       # real + synthetic arm: synthetic share of the combined batch, in (0, 1)
stream: bool = True               # online arm: fresh samples every step (also the synthetic part of the mix)
model: str = "cnn"                # classifier from synthstudy.models, the same for every arm
epochs: float = 20.0              # the baseline's budget rule: epochs x N / batch steps ...
min_steps: int = 300              # ... at least this many ...
max_steps: int = 2500             # ... at most this many
equivalence_margin: float = 0.01  # accuracy difference (fraction) still called equivalent to real (TOST)
batch_size: int = 128             # images per step
lr: float = 0.1                   # peak one-cycle learning rate (SGD, Nesterov)
augment: str = "flip_crop"        # the baseline's augmentation, for every arm (no flips for digits)
tta: str = "flip_shift"           # test-time views: none | flip | flip_shift
progress: bool = True             # tqdm progress bars

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

from synthstudy import analysis_scaling, cells, config, metrics, plots, runs, train

P = config.from_namespace(config.ScalingParams, globals())
ctx = cells.context(P.dataset, P.val_size, P.allow_download, P.data_root, P.image_size)
run = runs.Run("scaling", P.profile, P.model_dump(), device=str(train.resolve_device(P.device)))
sizes = P.resolved_sizes()
print(f"{ctx.splits.name}: {len(ctx.pool)} pool images, {P.val_size} for validation, {len(ctx.splits.test)} test; "
      f"steps per N: { {n: P.steps_for(n) for n in P.real_sizes()} }; synthetic arms at N in {sizes}; "
      f"results in {run.dir}")

# %% [markdown]
# ## The grid: N × seed × (real, and per generator: pools, stream, real + synthetic)
# One cell trains one classifier through `cells.classifier`, the function every notebook's classifier cells use;
# a real-arm cell the baseline already ran on this profile (same key) is taken from its record (`reused_from`).

# %%
keys = cells.scaling_keys(P)
records = run.grid(keys, cells.reuse_or_run(P.profile, ("baseline",), **cells.runtime(P)),
                   progress=P.progress,
                   describe=lambda k, m: f"n={k['n']} seed={k['seed']} {k['generator']} {k['arm']}: "
                                         f"test {m['test_accuracy']:.2%}")
table = run.write_table(analysis_scaling.arm_labels(pd.DataFrame([runs.flatten(r) for r in records]),
                                                   P.batch_size).to_dict("records"))
grid = analysis_scaling.main_cells(table)

# %% [markdown]
# ## Is every arm at its plateau?
# The baseline's budget check (the real arm at twice the budget, on validation), reused here.

# %%
checks = analysis_scaling.budget_checks(table, P.budget_sizes())
display(Markdown("\n".join(f"- {v}" for v in checks["verdict"]) or "no budget check requested"))

# %% [markdown]
# ## Summary: mean ± 95% CI per arm; the paired verdict against real; the multiplier
# `vs real (paired)` is the mean per-seed difference with its 95% CI and the Holm-corrected verdict. `summary.csv`
# holds this table, `comparisons.csv` every comparison (against real, and each fixed pool against the stream).

# %%
compared = analysis_scaling.comparisons(grid, margin=P.equivalence_margin)
summary = analysis_scaling.summary(grid, compared, sizes)
run.write_table(compared.to_dict("records"), name="comparisons.csv")
readable = summary.drop(columns="arm").rename(columns={"n": "N", "label": "arm"})[
    ["N", "arm", "accuracy (%)", "seeds", "vs real (paired)", "worth (N_eff / N)"]]
run.write_table(readable.to_dict("records"), name="summary.csv")
display(readable)

# %% [markdown]
# ## Accuracy vs N, one panel per generator
# The real curve (the same in every panel) and each synthetic arm at the N it was run, with 95% CI bands.

# %%
means = metrics.summarize(grid, by=["generator", "variant", "n"], value="test_accuracy")
G = len(P.scaling_generators)
fig, axes = plt.subplots(1, G, figsize=(5.2 * G, 4), sharey=True, squeeze=False)
for ax, g in zip(axes[0], P.scaling_generators):
    plots.accuracy_vs_size(means[means["generator"].isin([g, "none"])], x="n", hue="variant", ax=ax)
    ax.set_title(g)
    ax.set_xlabel("N real images")
fig.suptitle(f"{P.dataset}: real vs synthetic ({P.model}, budget {P.epochs:g} epochs in [{P.min_steps}, "
             f"{P.max_steps}] steps, {len(P.seeds)} seeds)")
fig.tight_layout()
plots.save(fig, "scaling_accuracy_vs_n", run.dir)

# %% [markdown]
# ## Paired differences against real data
# Each synthetic arm minus the real arm at the same N, per seed, with its 95% CI; the band is the equivalence
# margin. A CI inside the band (and the TOST verdict) is what "as good as real" needs — an overlap with 0 is not.

# %%
vs_real = compared[compared["question"] == "vs real"]
vs_real = vs_real.assign(row="N=" + vs_real["n"].astype(str) + " · " + vs_real["label"])
fig = plots.paired_differences(vs_real, label="row", margin=P.equivalence_margin,
                               title="synthetic arm − real arm (test accuracy)")
plots.save(fig, "scaling_paired_differences", run.dir)

# %% [markdown]
# ## Conclusions (generated from the verdicts above)

# %%
display(Markdown("\n".join(run.write_findings(
    analysis_scaling.findings(summary, compared, checks, P.equivalence_margin)))))
