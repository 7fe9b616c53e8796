"""The classifier cells of the study's grids, as importable functions: one key builder and one cell function.

Every notebook that trains a classifier (baseline, scaling, the generators notebook's CAS) builds its cell keys with
`classifier_key` and runs them with `classifier`, so

- the same cell has the same key everywhere: the scaling notebook reuses the baseline's real-arm records, and the
  generators notebook's CAS arm at N = "all" (a pool of the pool's size, or a stream) is the scaling notebook's
  arm of that kind there (unless the generators notebook's `zoo_overrides` sets that family otherwise: its key
  then holds `gen_config` and differs);
- a grid runs the same inline, under `EXECUTOR=local` and on Slurm: submitit pickles `classifier` (or a
  `functools.partial` of it) by reference, and the job rebuilds everything else — data, subset, generator — from
  the key alone (`runs.check_shippable` refuses anything else before submitting).

A key holds: the arm (`real`, `pool`, `stream`, `mix`, `mix_replace`), the generator and its training identity, N,
the seed, the data (dataset, validation holdout), the budget (`steps`, from the recipe's rule at N, times
`budget_factor` for the budget check), and the recipe with the classifier code version (`TrainingParams.recipe_key`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import data, generators, runs, sources, train

ARMS = ("real", "pool", "stream", "mix", "mix_replace")


@dataclass(frozen=True)
class Context:
    """A dataset's splits and the study's fixed holdout: `pool` (what subsets and generators come from), `val`."""

    splits: data.Splits
    pool: data.ImageSet
    val: data.ImageSet | None


@functools.lru_cache(maxsize=2)
def context(dataset: str, val_size: int, allow_download: bool = False, data_root: str = "",
            image_size: int = 64) -> Context:
    """The splits every notebook uses (loaded once per process; a submitit job loads its own). `data_root` and
    `image_size` matter for dataset="imagefolder" only."""
    splits = data.load(dataset, allow_download=allow_download, data_root=data_root or None,
                       image_size=image_size if dataset == "imagefolder" else None)
    pool, val = data.holdout(splits.train, val_size, seed=0)
    return Context(splits, pool, val)


def key_context(key: dict) -> Context:
    """The context of a cell key (an image folder's root and size are part of its keys)."""
    return context(key["dataset"], key["val_size"], False, key.get("data_root", ""), key.get("image_size", 64))


def runtime(params) -> dict:
    """How (not what) a notebook's classifier cells compute: device, progress bars, and a pretrained generator's
    weights source and consent. Bound into the cell function with functools.partial (`classifier(**runtime(P))`),
    never part of a key: they do not change a cell's result."""
    return {"device": params.device, "progress": params.progress,
            "weights": (("allow_download", bool(params.allow_download)),
                        ("pretrained_path", getattr(params, "pretrained_path", "") or ""),
                        ("allow_cpu_pretrained", bool(getattr(params, "allow_cpu_pretrained", False))))}


def subset_indices(ctx: Context, n: int, seed: int) -> np.ndarray:
    """The N real images of a seed (a stratified subset of the pool); N = the pool's size is the whole pool."""
    if n == len(ctx.pool):
        return np.arange(len(ctx.pool))
    return data.stratified_indices(ctx.pool.labels.numpy(), n, seed=seed)


@functools.lru_cache(maxsize=4)
def fitted_generator(name: str, key_data: tuple, n: int, seed: int, gen_steps: int, gen_seed: int,
                     device: str = "auto", progress: bool = False, weights: tuple = (), gen_config: tuple = ()):
    """The generator trained on exactly the real arm's N images of this seed (cached on disk across notebooks).

    `key_data` is the cell key's data fields as sorted (name, value) pairs. At N = the whole pool every seed shares
    one generator (the generators notebook's model at `gen_steps`): the seeds' CI then covers classifier and
    sampling noise, not generator-training noise. A pretrained generator is loaded, not trained (`weights`: its
    source and consent).
    `gen_config`: the key's settings beyond the family's defaults (the generators notebook's `zoo_overrides`), as
    sorted (name, value) pairs (`config_pairs`): the fitted models are memoised on these arguments.
    """
    ctx = key_context(dict(key_data))
    dataset = dict(key_data)["dataset"]
    whole = n == len(ctx.pool)
    config = dict(gen_config)
    if generators.is_pretrained(name):
        config = {"classes": list(ctx.splits.classes), **dict(weights)}
        config["pretrained_path"] = config.get("pretrained_path") or None
    gen, idx = generators.fit_on_subset(name, ctx.pool, dataset=dataset, n="all" if whole else n,
                                        subset_seed=0 if whole else seed, steps=gen_steps, seed=gen_seed,
                                        config=config, device=device, progress=progress,
                                        num_classes=ctx.splits.num_classes)
    if not np.array_equal(np.sort(idx), subset_indices(ctx, n, seed)):
        raise RuntimeError(f"the {name} generator for n={n} seed={seed} saw other images than the real arm; "
                           f"fit_on_subset and subset_indices disagree")
    return gen.to(train.resolve_device(device))     # sample on the classifier's device (fit hands back a CPU model)


def config_pairs(key: dict) -> tuple:
    """A cell key's generator settings beyond the defaults (`gen_config`) as sorted (name, value) pairs."""
    return tuple(sorted(key.get("gen_config", {}).items()))


def classifier_key(params, arm: str, n: int, seed: int, generator: str = "none", budget_factor: int = 1,
                   **extra) -> dict:
    """The key of one classifier cell (see the module docstring); `params` is any notebook's validated parameters
    with the recipe (`config.TrainingParams`) and the data fields. `extra`: `m` (pool size) or
    `synthetic_fraction` (mix arms)."""
    if arm not in ARMS:
        raise ValueError(f"arm={arm!r} is unknown; allowed values: {', '.join(ARMS)}")
    if (arm == "real") != (generator == "none"):
        raise ValueError(f"arm={arm!r} with generator={generator!r}: the real arm has none, every other arm one")
    gen = params.generator_key(generator) if generator != "none" else {}
    budget = {"steps": params.steps_for(n, budget_factor)}
    if budget_factor != 1:
        budget["budget_factor"] = budget_factor
    return {"arm": arm, "generator": generator, "n": int(n), "seed": int(seed), **extra, **gen,
            **data_fields(params), **budget, **params.recipe_key()}


def baseline_keys(params) -> list[dict]:
    """The baseline notebook's grid: the real arm at every N and seed, then its budget check (2x) at some N."""
    keys = [classifier_key(params, "real", n, s) for n in params.resolved_sizes() for s in params.seeds]
    return keys + [classifier_key(params, "real", n, s, budget_factor=2) for n in params.budget_sizes()
                   for s in params.seeds]


def cas_keys(params) -> list[dict]:
    """The generators notebook's CAS grid at N = the whole pool: the real arm, per CAS family a synthetic arm
    (`cas_arm`: a pool as large as the real one, or a stream), then the budget check (last, so that a baseline
    still running its check has finished it by then and it is reused)."""
    n_all = params.resolve(["all"])[0]
    pool = {"m": n_all} if params.cas_arm == "pool" else {}
    keys = [classifier_key(params, "real", n_all, s) for s in params.seeds]
    keys += [classifier_key(params, params.cas_arm, n_all, s, g, **pool) for g in params.cas_names()
             for s in params.seeds]
    return keys + [classifier_key(params, "real", n_all, s, budget_factor=2) for s in params.seeds]


def scaling_keys(params) -> list[dict]:
    """The scaling notebook's grid: the real curve, then per synthetic N, seed and generator its pools, stream and
    mixes, and the budget check last (see `cas_keys`)."""
    keys = [classifier_key(params, "real", n, s) for n in params.real_sizes() for s in params.seeds]
    for n in params.resolved_sizes():
        for s in params.seeds:
            for g in params.scaling_generators:
                keys += [classifier_key(params, "pool", n, s, g, m=m) for m in params.pool_sizes(n)]
                keys += [classifier_key(params, "stream", n, s, g)] if params.stream else []
                keys += [classifier_key(params, "mix", n, s, g, synthetic_fraction=f)
                         for f in sorted(params.mix_fractions)]
    return keys + [classifier_key(params, "real", n, s, budget_factor=2) for n in params.budget_sizes()
                   for s in params.seeds]


def data_fields(params) -> dict:
    """What a key holds about the data: the dataset and the validation holdout (an image folder: its root, size)."""
    fields = {"dataset": params.dataset, "val_size": params.val_size}
    if params.dataset == "imagefolder":
        fields.update(data_root=params.data_root, image_size=params.image_size)
    return fields


DATA_FIELDS = ("dataset", "val_size", "data_root", "image_size")


def key_generator(key: dict, n: int, seed: int, device: str = "auto", progress: bool = False, weights: tuple = ()):
    """The generator a cell key names (family, steps, seed, settings), trained on the real arm's N images of `seed`
    (`fitted_generator`: cached on disk across notebooks)."""
    key_data = tuple(sorted((k, key[k]) for k in DATA_FIELDS if k in key))
    return fitted_generator(key["generator"], key_data, n, seed, key["gen_steps"], key["gen_seed"], device, progress,
                            weights, config_pairs(key))


def batch_source(key: dict, device: str = "auto", progress: bool = False, weights: tuple = ()):
    """The batches of one cell's arm, and the indices of the real subset it derives from."""
    ctx = key_context(key)
    n, seed = key["n"], key["seed"]
    idx = subset_indices(ctx, n, seed)
    real = sources.ImageSetSource(ctx.pool.take(idx))
    if key["arm"] == "real":
        return real, idx
    gen = key_generator(key, n, seed, device, progress, weights)
    if key["arm"] == "pool":
        return sources.ImageSetSource(generators.sample_pool(gen, key["m"], seed=seed, progress=progress)), idx
    online = sources.GeneratorStream(gen, num_classes=ctx.splits.num_classes)
    if key["arm"] == "stream":
        return online, idx
    return sources.MixSource(real, online, key["synthetic_fraction"], replace=key["arm"] == "mix_replace"), idx


def classifier(key: dict, cell_dir: Path, device: str = "auto", progress: bool = False, weights: tuple = ()) -> dict:
    """Run one classifier cell: its batches, `train.classifier_cell` (build → fit → score), the subset's indices."""
    source, idx = batch_source(key, device=device, progress=progress, weights=weights)
    runs.save_npy(Path(cell_dir) / "indices.npy", idx)
    ctx = key_context(key)
    cfg = recipe_config(key, key["steps"], key["seed"], device, progress)
    return train.classifier_cell(source, cfg, key["model"], ctx.splits.image_shape, ctx.splits.num_classes,
                                 ctx.val, ctx.splits.test)


def recipe_config(recipe, steps: int, seed: int, device: str = "auto", progress: bool = False) -> train.TrainConfig:
    """The classifier's TrainConfig from a recipe mapping (a cell key, or a profile's parameters): batch size, lr,
    augmentation and test-time augmentation, with the budget and seed given."""
    return train.TrainConfig(steps=steps, batch_size=recipe["batch_size"], lr=recipe["lr"], augment=recipe["augment"],
                             tta=recipe["tta"], seed=seed, device=device, progress=progress)


def profile_steps(params, n: int) -> int:
    """The classifier budget at N = n by the profile's rule (`train.steps_for_size`), from its parameters."""
    return train.steps_for_size(n, params["batch_size"], params["epochs"], params["min_steps"], params["max_steps"])


def pool_cas(gen, ctx: Context, params, seed: int, device: str = "auto", arm: str = "pool") -> dict:
    """CAS of an in-memory generator, scored the way the notebooks' `pool` arm scores a family at N = the whole pool: a
    balanced pool of len(ctx.pool) samples drawn with `seed`, the profile's classifier at that N's budget trained
    with `seed`, then `train.classifier_cell`'s metrics (validation to choose on, test reported). `arm="stream"`
    trains the same classifier on fresh samples every batch instead (the notebooks' `stream` arm: steps x batch
    unique images, none seen twice). For the scripts that compare settings of one family outside the notebooks'
    grids (samplers, penalties, seeds, pool against stream)."""
    if arm not in ("pool", "stream"):
        raise ValueError(f"arm={arm!r}: allowed: 'pool', 'stream'")
    gen = gen.to(train.resolve_device(device))
    if arm == "pool":
        source = sources.ImageSetSource(generators.sample_pool(gen, len(ctx.pool), seed=seed))
    else:
        source = sources.GeneratorStream(gen, num_classes=ctx.splits.num_classes)
    cfg = recipe_config(params, profile_steps(params, len(ctx.pool)), seed, device)
    return train.classifier_cell(source, cfg, params["model"], ctx.splits.image_shape,
                                 ctx.splits.num_classes, ctx.val, ctx.splits.test)


def reuse_or_run(profile: str, notebooks: tuple[str, ...], device: str = "auto", progress: bool = False,
                 weights: tuple = ()):
    """A cell function that first looks for the same key's finished record in other notebooks' runs of this profile
    (e.g. the scaling notebook's real arm in the baseline's grid) and trains only when none has it."""
    return functools.partial(_reuse_or_run, profile=profile, notebooks=tuple(notebooks), device=device,
                             progress=progress, weights=weights)


def _reuse_or_run(key: dict, cell_dir: Path, profile: str, notebooks: tuple, device: str, progress: bool,
                  weights: tuple = ()) -> dict:
    for notebook in notebooks:
        done = runs.find_record(profile, notebook, key)
        if done is not None:
            ctx = key_context(key)
            runs.save_npy(Path(cell_dir) / "indices.npy", subset_indices(ctx, key["n"], key["seed"]))
            return {**done["metrics"], "reused_from": notebook}
    return classifier(key, cell_dir, device=device, progress=progress, weights=weights)


def quality_key(params, generator: str, extractor_key: dict) -> dict:
    """The key of one generator-quality cell (the generators notebook): the whole-pool generator, the number of
    samples scored and the feature space they are scored in."""
    gen = params.generator_key(generator)
    return {"generator": generator, **gen, **data_fields(params), "quality_samples": params.quality_samples,
            "extractor": extractor_key}


SAMPLE_ROWS = 8           # samples per class a quality cell keeps for the notebook's figure (uint8: 63 KB at 28x28)


def sample_grid(images: data.ImageSet, num_classes: int, rows: int = SAMPLE_ROWS) -> np.ndarray | None:
    """The first `rows` images of each class, class by class (class 0's first, then class 1's, ...), as uint8 NCHW:
    the samples figure's panel (`plots.image_grid`, one row per class). Fewer per class where the smallest class has
    fewer (the rows must line up); None where a class has no image (few samples over many classes)."""
    labels = images.labels.numpy()
    per_class = [np.flatnonzero(labels == c) for c in range(num_classes)]
    rows = min(rows, *(len(idx) for idx in per_class))
    if rows == 0:
        return None
    return images.images[np.concatenate([idx[:rows] for idx in per_class])].numpy()


def kept_sample_grid(key: dict, cell_dir: Path, device: str = "auto", progress: bool = False,
                     weights: tuple = ()) -> np.ndarray:
    """The sample grid quality cell `key` kept in `cell_dir` (`sample_grid` of the samples it scored). A record
    written before cells kept one gets one now, drawn from the family's fit (trained here if the cache is empty;
    balanced labels from seed 0, so other samples than those scored) and saved beside it, so the next machine that
    reads the records needs no fit either."""
    path = Path(cell_dir) / "samples.npy"
    if not path.is_file():
        gen = key_generator(key, len(key_context(key).pool), 0, device, progress, weights)
        grid = sample_grid(generators.sample_pool(gen, gen.num_classes * SAMPLE_ROWS, seed=0), gen.num_classes)
        runs.save_npy(path, grid)
    return np.load(path)


def generator_quality(key: dict, cell_dir: Path, device: str = "auto", progress: bool = False,
                      weights: tuple = ()) -> dict:
    """Score one whole-pool generator: draw `quality_samples` balanced samples (timed), FID / KID / PRDC against as
    many held-out validation images in the domain feature space, its training time, curves and storage. Keeps
    `sample_grid` of those samples in `cell_dir`, so the notebook's figure needs no fit on a machine whose generator
    cache is empty (records from another machine: refitting paper's zoo there costs hours on 2 cores)."""
    import time

    from . import quality
    ctx = key_context(key)
    spec = key["extractor"]                      # the cached domain extractor this key was built with
    extractor = quality.domain_extractor(ctx.pool, spec["dataset"], steps=spec["steps"], seed=spec["seed"],
                                         model=spec["model"], augment=spec["augment"], batch_size=spec["batch_size"],
                                         device=device, progress=progress)
    gen = key_generator(key, len(ctx.pool), 0, device, progress, weights)        # the whole pool's
    reference = ctx.val.take(data.stratified_indices(ctx.val.labels.numpy(), min(len(ctx.val),
                                                                                key["quality_samples"]), seed=0))
    start = time.perf_counter()
    fake = generators.sample_pool(gen, key["quality_samples"], seed=0, progress=progress)
    sample_seconds = time.perf_counter() - start
    scores = quality.sample_quality(extractor, reference, fake)
    grid = sample_grid(fake, gen.num_classes)
    if grid is not None:
        runs.save_npy(Path(cell_dir) / "samples.npy", grid)
    # the fit may have run elsewhere (a cached GPU fit scored on a laptop): its time comes with its device
    fit_device = gen.history.get("device",
                                 "pretrained" if generators.is_pretrained(key["generator"]) else "not recorded")
    return {**scores, "train_seconds": gen.history["seconds"], "fit_device": fit_device,
            "samples_per_s": len(fake) / sample_seconds, "sample_device": str(gen.device),
            "parameter_bytes": generators.parameter_bytes(gen),
            "history": {k: v for k, v in gen.history.items() if isinstance(v, list)}}
