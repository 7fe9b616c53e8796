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
# real ones it learned from. Every arm below trains the same classifier, with the same step budget, learning rate,
# augmentation, test-time views and initialisation seed; they differ **only in where the batches come from**:
#
# | arm | batches come from |
# |---|---|
# | **real** | the N real images (a stratified subset of the pool, the baseline's recipe) |
# | **pool** (fixed) | M unique samples drawn once from the generator trained on those same N images, M = N, 10N, ... |
# | **stream** (online) | fresh samples every step: the "unlimited data" claim |
# | **mix** | each batch is part real (the N images), part stream, at a fixed synthetic share α |
#
# **Seeds.** A seed picks the real subset, the classifier's initialisation and the batch order. The generator of
# a (N, seed) cell is fitted on *that seed's subset*, so the synthetic arms never see an image the real arm did
# not. At N = "all" the subset is the whole pool for every seed, so all seeds share one generator (the generators
# notebook's cached model): there the CI covers classifier and sampling noise, not generator-training noise.
#
# **Pool sizes.** A classifier sees `steps × batch_size` images in all. A pool at least that large is never
# seen twice, which is what the stream gives, so M is clipped to `steps × batch_size` and duplicates after
# clipping are dropped (at N = "all", M = N is already clipped).
#
# **Reading the effective-data multiplier.** The real arm's mean accuracy vs N is a curve, measured at
# `train_sizes` (the baseline's sizes: on the same profile its cells are reused) and at every synthetic N. A
# synthetic arm at N "is worth" N_eff real images where the real curve (made monotone by its running maximum,
# interpolated linearly in log N) reaches the same accuracy; the multiplier is N_eff / N. Above 1: the generator
# added value beyond its N images; below 1: it lost some. Off the measured curve the table says "< smallest N" or
# "> largest N": nothing is extrapolated, so a multiplier is only as fine as the grid of sizes.
#
# **Run it:** Run All uses the defaults below (the `quick` profile); `make reproduce` runs it after the
# generators notebook, which trains and caches the N = "all" generators this notebook loads. Generators for
# smaller N are fitted here on first use and cached too. Finished cells are recorded under
# `results/<profile>/scaling/` and skipped on rerun, so a changed parameter reruns only the cells it touches.

# %% tags=["parameters"]
profile: str = "quick"            # label of the run folder results/<profile>/scaling; the configs/ name
dataset: str = "fashion_mnist"    # fashion_mnist | digits | cifar10 (cifar10 needs allow_download or local files)
allow_download: bool = False      # True lets torchvision download cifar10 (needs internet); never needed otherwise
device: str = "auto"              # auto -> cuda if present, else cpu; or cpu | cuda | cuda:<i> | mps
seeds: list = [0, 1, 2]           # each picks the real subset, the generator it trains, init, batch order; 3+ for a CI
val_size: int = 5000              # images held out of the pool (validation accuracy); no arm trains on them
train_sizes: list = [100, 300, 1000, 3000, 10000, "all"]   # the real curve the multiplier is read off: N of
                                  # the real arm alone (the baseline's sizes: its cells are reused, not retrained)
scaling_sizes: list = [1000, "all"]   # N of the synthetic arms (and of the real arm); "all" is the whole pool
scaling_generators: list = ["pca_gaussian"]   # families refit on every N-image subset and seed; a cvae fit
                                  # costs minutes (one per N and seed), so only the full profile has the learned ones
gen_steps: dict = {"pca_gaussian": 1, "cvae": 800, "cgan": 1200, "flow": 2400}   # training steps per family;
                                  # shared with the generators notebook so N "all" loads its cached models
gen_seed: int = 0                 # seed of every generator fit (shared with the other notebooks: same cache)
pool_multiples: list = [1, 10]    # fixed-pool arm, M in multiples of N (unique samples; clipped to steps x batch)
mix_fractions: list = [0.5]       # mix arm: synthetic share of every batch, strictly between 0 (real) and 1 (stream)
stream: bool = True               # online arm: fresh samples every step (also the synthetic half of the mix arm)
model: str = "cnn"                # classifier from synthstudy.models, the same for every arm
steps: int = 150                  # optimizer steps per cell, the baseline's budget (images seen: steps x batch)
batch_size: int = 128             # images per step
lr: float = 0.1                   # peak one-cycle learning rate (SGD, Nesterov)
augment: str = "flip_crop"        # the baseline's augmentation, for every arm (no flips for digits)
tta: str = "flip"                 # test-time views: none | flip | flip_shift
progress: bool = True             # tqdm progress bars

# %%
import functools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown, display

from synthstudy import config, data, generators, metrics, models, plots, runs, sources, train

P = config.from_namespace(config.ScalingParams, globals())
splits = data.load(P.dataset, allow_download=P.allow_download)
pool, val = data.holdout(splits.train, P.val_size, seed=0)
device = train.resolve_device(P.device)
run = runs.Run("scaling", P.profile, P.model_dump(), device=str(device))
images_seen = P.steps * P.batch_size
sizes = P.resolved_sizes()
print(f"{splits.name}: {len(pool)} pool images, {P.val_size} for validation, {len(splits.test)} test; every cell "
      f"trains on {P.steps} x {P.batch_size} = {images_seen:,} images; synthetic arms at N in {sizes}, the real "
      f"arm at N in {P.real_sizes()}; results in {run.dir}")

# %% [markdown]
# ## The grid: N × seed × (real, and per generator: pools, stream, mixes)
# One cell trains one classifier; `batch_source` is the only place where the arms differ. Cells sharing a
# generator run one after another, so each generator is fitted (or loaded from the cache) once. Each record keeps
# the indices of the real subset (`indices.npy`) that the cell, and its generator, were trained on. A real-arm
# cell that the baseline notebook already ran on this profile (same N, seed and recipe) is taken from its record
# (`reused_from` says so) rather than trained twice.

# %%
@functools.lru_cache(maxsize=4)
def fitted(name, n, seed):
    """The generator trained on exactly the real arm's N images of this seed (cached on disk across notebooks)."""
    whole = n == len(pool)          # "all": one generator for every seed, the generators notebook's model
    gen, idx = generators.fit_on_subset(name, pool, dataset=P.dataset, n="all" if whole else n,
                                        subset_seed=0 if whole else seed, steps=P.gen_steps[name],
                                        seed=P.gen_seed, device=P.device, progress=P.progress,
                                        num_classes=splits.num_classes)
    return gen.to(device), idx      # sample on the classifier's device (fit hands back a CPU model)


def batch_source(key):
    """The batches of one cell's arm, and the real subset it derives from."""
    n, seed = key["n"], key["seed"]
    idx = data.stratified_indices(pool.labels.numpy(), n, seed=seed)
    real = sources.ImageSetSource(pool.take(idx))
    if key["arm"] == "real":
        return real, idx
    gen, gen_idx = fitted(key["generator"], n, seed)
    if not np.array_equal(np.sort(gen_idx), idx):
        raise RuntimeError(f"the {key['generator']} generator for n={n} seed={seed} saw other images than the "
                           f"real arm; fit_on_subset and stratified_indices disagree")
    if key["arm"] == "pool":
        return sources.ImageSetSource(generators.sample_pool(gen, key["m"], seed=seed, progress=P.progress)), idx
    online = sources.GeneratorStream(gen, num_classes=splits.num_classes)
    if key["arm"] == "stream":
        return online, idx
    return sources.MixSource(real, online, key["synthetic_fraction"]), idx


def baseline_key(key):
    """The baseline notebook's key of the same real-data cell (its fields, in its order)."""
    return {k: key[k] for k in ("dataset", "model", "n", "seed", "val_size", "steps", "batch_size", "lr",
                                "augment", "tta")}


def run_cell(key, cell_dir):
    if key["arm"] == "real":
        # the baseline trained this very classifier (same subset, init, batches and recipe): reuse its record
        done = runs.find_record(P.profile, "baseline", baseline_key(key))
        if done is not None:
            runs.save_npy(cell_dir / "indices.npy", data.stratified_indices(pool.labels.numpy(), key["n"],
                                                                            seed=key["seed"]))
            return {**done["metrics"], "reused_from": "baseline"}
    source, idx = batch_source(key)
    runs.save_npy(cell_dir / "indices.npy", idx)
    cfg = P.train_config(seed=key["seed"], device=P.device, progress=P.progress)
    net = models.create_model(P.model, splits.image_shape[0], splits.num_classes, splits.image_shape[-1],
                              seed=key["seed"])
    result = train.fit(net, source, cfg)
    out = {"test_accuracy": train.evaluate(result.model, splits.test, cfg)["accuracy"],
           "train_seconds": result.seconds, "images_per_s": result.images_per_s}
    if val is not None:
        out["val_accuracy"] = train.evaluate(result.model, val, cfg)["accuracy"]
    return out


recipe = {"dataset": P.dataset, "model": P.model, "val_size": P.val_size, "steps": P.steps,
          "batch_size": P.batch_size, "lr": P.lr, "augment": P.augment, "tta": P.tta}


def cell(arm, n, seed, generator="none", **extra):
    gen = generators.cell_key(generator, P.gen_steps[generator], P.gen_seed) if generator != "none" else {}
    return {"arm": arm, "generator": generator, "n": n, "seed": seed, **extra, **gen, **recipe}


keys = []
for n in P.real_sizes():
    for s in P.seeds:
        keys.append(cell("real", n, s))
        for g in (P.scaling_generators if n in sizes else []):
            keys += [cell("pool", n, s, g, m=m) for m in P.pool_sizes(n)]
            keys += [cell("stream", n, s, g)] if P.stream else []
            keys += [cell("mix", n, s, g, synthetic_fraction=f) for f in sorted(P.mix_fractions)]


def describe(key, m):
    arm = {"pool": f"pool M={key.get('m')}", "mix": f"mix {key.get('synthetic_fraction')}"}.get(key["arm"], key["arm"])
    return f"n={key['n']} seed={key['seed']} {key['generator']} {arm}: test {m['test_accuracy']:.2%}"


records = run.grid(keys, run_cell, progress=P.progress, describe=describe)

# %% [markdown]
# ## The tidy table
# One row per cell (`metrics.csv`). Besides the key, each row says what share of every batch was synthetic
# (`synthetic_fraction`), how many distinct synthetic images the classifier saw (`unique_synthetic`: M for a
# pool, every synthetic image for the stream and the mix) and a readable `variant` label.

# %%
def variant(row):
    if row["arm"] == "pool":
        return f"pool M={int(row['m'])}"
    if row["arm"] == "mix":
        return f"mix {row['synthetic_fraction']:.0%}"
    return row["arm"]


table = pd.DataFrame([runs.flatten(r) for r in records])
for column in ("m", "synthetic_fraction"):
    if column not in table:
        table[column] = np.nan
table["synthetic_fraction"] = np.select([table["arm"] == "real", table["arm"] == "mix"],
                                        [0.0, table["synthetic_fraction"]], 1.0)
per_step = (table["synthetic_fraction"] * P.batch_size).round()      # what MixSource draws from the stream
table["unique_synthetic"] = np.where(table["arm"] == "pool", table["m"], per_step * P.steps).astype(int)
table["variant"] = table.apply(variant, axis=1)
table = run.write_table(table.to_dict("records"))
display(table.groupby(["generator", "variant", "n"], sort=False)["test_accuracy"].agg(["mean", "count"])
        .round(4).head(40))

# %% [markdown]
# ## Summary: mean ± 95% CI per arm, generator and N; the comparison with real data; the multiplier
# "vs real" is Welch's test over seeds against the real arm at the same N: `tie` when the difference is inside
# the noise. `worth` reads each synthetic mean off the real arm's curve (see the introduction); `N_eff range` reads
# the two ends of the arm's 95% CI off the same curve. The real curve's own noise is not in that range, so it is
# a lower bound on the multiplier's uncertainty: a multiplier whose arm ties with real is no evidence of a gain.
# `summary.csv` holds this table at the synthetic arms' N, `arms.csv` every row (the whole real curve too) as
# plain numbers.

# %%
summary = metrics.summarize(table, by=["generator", "variant", "n"], value="test_accuracy")
attrs = table.groupby(["generator", "variant", "n"])[["arm", "m", "synthetic_fraction", "unique_synthetic"]].first()
summary = summary.join(attrs, on=["generator", "variant", "n"])
real = summary[summary["arm"] == "real"].sort_values("n")


def accuracies(generator, variant_name, n):
    rows = table[(table["generator"] == generator) & (table["variant"] == variant_name) & (table["n"] == n)]
    return rows["test_accuracy"].to_numpy()


summary["vs real"] = ["—" if r.arm == "real" else metrics.compare(accuracies(r.generator, r.variant, r.n),
                                                                   accuracies("none", "real", r.n))
                      for r in summary.itertuples()]
effective = [metrics.effective_data(real["n"], real["mean"], r.mean) for r in summary.itertuples()]
summary["n_eff"] = [e[0] for e in effective]
summary["where"] = [e[1] for e in effective]
summary["multiplier"] = summary["n_eff"] / summary["n"]
summary.loc[summary["arm"] == "real", ["n_eff", "multiplier", "where"]] = [math.nan, math.nan, "—"]


def n_eff_text(acc):
    n_eff, where = metrics.effective_data(real["n"], real["mean"], acc)
    return {"below": f"< {real['n'].min():,}", "above": f"> {real['n'].max():,}"}.get(where, f"{n_eff:,.0f}")


# the synthetic arm's own 95% CI read off the same curve (the real curve's noise is not in this range)
summary["N_eff range"] = ["—" if r.arm == "real" else f"{n_eff_text(r.ci_low)} … {n_eff_text(r.ci_high)}"
                          for r in summary.itertuples()]
summary["worth"] = ["—" if r.arm == "real" else metrics.format_multiplier(e[0], e[1], r.n, real["n"])
                    for e, r in zip(effective, summary.itertuples())]
summary["test accuracy (%)"] = [metrics.format_ci(m, h) for m, h in zip(summary["mean"], summary["ci"])]
# per N: the real arm first, then each generator in the parameter's order, its arms stream, pools by M, mixes
rank = {"generator": {"none": -1, **{g: i for i, g in enumerate(P.scaling_generators)}},
        "arm": {"real": 0, "stream": 1, "pool": 2, "mix": 3}}
summary = summary.sort_values(["n", "generator", "arm", "unique_synthetic"],
                              key=lambda c: c.map(rank[c.name]) if c.name in rank else c).reset_index(drop=True)
# arms.csv: every number; summary.csv: the readable table (the README shows it)
columns = ["n", "generator", "variant", "arm", "m", "synthetic_fraction", "unique_synthetic", "mean", "ci",
           "ci_low", "ci_high", "seeds", "vs real", "n_eff", "multiplier", "where"]
run.write_table(summary[columns].to_dict("records"), name="arms.csv")
readable = summary[summary["n"].isin(sizes)].replace({"generator": {"none": "—"}}).rename(
    columns={"n": "N", "variant": "arm (variant)", "worth": "worth (N_eff / N)"})[
    ["N", "generator", "arm (variant)", "test accuracy (%)", "seeds", "vs real", "worth (N_eff / N)", "N_eff range"]]
run.write_table(readable.to_dict("records"), name="summary.csv")
display(readable)

# %% [markdown]
# ## Accuracy vs N, one panel per generator
# The real arm (the same in every panel), the stream, the smallest fixed pool (M = N unless clipped) and each mix,
# with 95% CI bands over seeds.

# %%
def curve_label(r):
    if r.arm == "pool":
        smallest = summary[(summary["generator"] == r.generator) & (summary["n"] == r.n)
                           & (summary["arm"] == "pool")]["m"].min()
        return f"pool, M = {min(P.pool_multiples)}N" if r.m == smallest else None
    return {"real": "real", "stream": "stream"}.get(r.arm, f"mix, {r.synthetic_fraction:.0%} stream")


summary["curve"] = [curve_label(r) for r in summary.itertuples()]
plots.style()
G = len(P.scaling_generators)
fig, axes = plt.subplots(1, G, figsize=(5.2 * G, 4), sharey=True, squeeze=False)
for ax, g in zip(axes[0], P.scaling_generators):
    lines = summary[summary["generator"].isin([g, "none"]) & summary["curve"].notna()]
    plots.accuracy_vs_size(lines, x="n", hue="curve", ax=ax)
    ax.set_title(f"{g}")
    ax.set_xlabel("N real images")
    ax.legend(title="arm", fontsize=8)
fig.suptitle(f"{P.dataset}: real vs synthetic ({P.model}, {P.steps} steps × {P.batch_size}, "
             f"{len(P.seeds)} seeds)")
fig.tight_layout()
plots.save(fig, "scaling_accuracy_vs_n", run.dir)

# %% [markdown]
# ## Does the number of unique samples matter? Accuracy vs M at each N
# Fixed pools of M unique samples, and the stream as the M → ∞ end: it delivers `steps × batch_size` distinct
# images, the most a classifier on this budget can see (star). The dashed line is the real arm at the same N.

# %%
fig, axes = plt.subplots(1, G, figsize=(5.2 * G, 4), sharey=True, squeeze=False)
palette = dict(zip(sizes, sns.color_palette("colorblind", len(sizes))))
for ax, g in zip(axes[0], P.scaling_generators):
    for n in sizes:
        color = palette[n]
        pools = summary[(summary["generator"] == g) & (summary["n"] == n) & (summary["arm"] == "pool")]
        if len(pools):
            pools = pools.sort_values("m")
            ax.errorbar(pools["m"], pools["mean"] * 100, yerr=pools["ci"].fillna(0) * 100, marker="o",
                        color=color, capsize=3, label=f"N = {n:,}")
        online = summary[(summary["generator"] == g) & (summary["n"] == n) & (summary["arm"] == "stream")]
        for r in online.itertuples():
            ax.errorbar([r.unique_synthetic], [r.mean * 100], yerr=[0 if math.isnan(r.ci) else r.ci * 100],
                        marker="*", markersize=12, color=color, capsize=3,
                        label=None if len(pools) else f"N = {n:,}")
        ref = real[real["n"] == n]["mean"]
        if len(ref):
            ax.axhline(float(ref.iloc[0]) * 100, color=color, ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("unique synthetic images M (star: stream)")
    ax.set_title(g)
    ax.legend(fontsize=8)
axes[0][0].set_ylabel("test accuracy (%)")
fig.tight_layout()
plots.save(fig, "scaling_accuracy_vs_m", run.dir)

# %% [markdown]
# ## Real + synthetic: accuracy vs the synthetic share of each batch
# 0 is the real arm, 1 the stream; in between, each batch mixes the N real images with fresh samples.

# %%
if P.stream or P.mix_fractions:
    fig, axes = plt.subplots(1, G, figsize=(5.2 * G, 4), sharey=True, squeeze=False)
    for ax, g in zip(axes[0], P.scaling_generators):
        mixes = summary[summary["generator"].isin([g, "none"]) & summary["arm"].isin(["real", "stream", "mix"])
                        & summary["n"].isin(sizes)]
        plots.accuracy_vs_size(mixes, x="synthetic_fraction", hue="n", ax=ax, logx=False)
        ax.legend(title="N real images", fontsize=8)
        ax.set_xlabel("synthetic share of each batch")
        ax.set_title(g)
    fig.tight_layout()
    plots.save(fig, "scaling_accuracy_vs_mix", run.dir)

# %% [markdown]
# ## The effective-data multiplier
# N_eff / N for every synthetic arm: 1 (dotted line) means the arm is worth exactly the N real images it came
# from. Hatched bars are off the real curve and only bound the multiplier (< or > the drawn value).

# %%
worth = summary[summary["arm"] != "real"].copy()
low, high = real["n"].min(), real["n"].max()
worth["bar"] = np.select([worth["where"] == "below", worth["where"] == "above"],
                         [low / worth["n"], high / worth["n"]], worth["multiplier"])
display(worth[["n", "generator", "variant", "test accuracy (%)", "vs real", "worth", "N_eff range"]])
fig, axes = plt.subplots(1, G, figsize=(5.2 * G, 0.32 * len(worth) / max(G, 1) + 1.6), sharex=True, squeeze=False)
for ax, g in zip(axes[0], P.scaling_generators):
    rows = worth[worth["generator"] == g].reset_index(drop=True)
    labels = [f"N={r.n:,} · {r.variant}" for r in rows.itertuples()]
    colors = [palette[n] for n in rows["n"]]
    bars = ax.barh(labels, rows["bar"], color=colors)
    for bar, r in zip(bars, rows.itertuples()):
        if r.where != "inside":
            bar.set_hatch("//")
            bar.set_alpha(0.5)
            ax.annotate("<" if r.where == "below" else ">", (r.bar, bar.get_y() + bar.get_height() / 2),
                        xytext=(3, 0), textcoords="offset points", va="center")
    ax.axvline(1, color="black", ls=":", lw=1)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("effective-data multiplier N_eff / N")
    ax.set_title(g)
fig.tight_layout()
plots.save(fig, "scaling_effective_data", run.dir)

# %% [markdown]
# ## Conclusions (generated from the numbers above)
# Each sentence below is built from Welch's test over seeds (`metrics.compare`): "higher" and "lower" only when the
# difference is outside the 95% noise, "tie" otherwise. Nothing here is typed by hand, so a rerun with other
# parameters rewrites it.

# %%
def mean_text(r):
    return metrics.format_ci(r["mean"], r["ci"]) + "%"


sentences = []
for n in sizes:
    ref = summary[(summary["arm"] == "real") & (summary["n"] == n)].iloc[0]
    for g in P.scaling_generators:
        arms = summary[(summary["generator"] == g) & (summary["n"] == n)]
        parts = [f"{r['variant']} {r['vs real']} ({mean_text(r)}, worth {r['worth']}, N_eff range {r['N_eff range']})"
                 for _, r in arms.iterrows()]
        sentences.append(f"- **N = {n:,}, {g}** vs real ({mean_text(ref)}): " + "; ".join(parts) + ".")
        if P.stream and (arms["arm"] == "pool").any():
            online = accuracies(g, "stream", n)
            verdicts = [f"{r['variant']} is {metrics.compare(accuracies(g, r['variant'], n), online)}"
                        for _, r in arms[arms["arm"] == "pool"].iterrows()]
            sentences.append("  - unique samples: against the stream, " + ", ".join(verdicts) + ".")
    synthetic = summary[(summary["n"] == n) & (summary["arm"] != "real")]
    groups = {v: [f"{r['generator']} {r['variant']}" for _, r in synthetic.iterrows() if r["vs real"] == v]
              for v in ("higher", "tie", "lower")}
    sentences.append(f"- **Answer at N = {n:,}:** better than the {n:,} real images: "
                     f"{', '.join(groups['higher']) or 'none'}; tied with them: {', '.join(groups['tie']) or 'none'}; "
                     f"worse: {', '.join(groups['lower']) or 'none'}.")
display(Markdown("\n".join(sentences)))
