"""The audits notebook's grid cells: module-level functions that load everything they need from their key.

`run.grid(keys, functools.partial(cells.privacy_cell, device=..., progress=...))` may run a cell in this process or
ship it to another one (submitit), so a cell is a package function of (key, cell_dir) plus picklable options, and
everything it uses (data, feature spaces, generators) is rebuilt from the key and cached per process
(`functools.lru_cache`; trained models also on disk, `runs.cached`). Every key holds `AUDITS_VERSION`, so changed
code reruns its cells instead of mixing old numbers into the table.

- `privacy_cell`: one generator (or the planted `privacy.Memoriser`) at one N and seed: samples, copy rate and copy
  excess, attack AUC, distance ratios, closest pairs; at N = all also FID / KID in both feature spaces.
- `bias_cell`: one generator trained on one seed's imbalanced subset; four classifier arms (real imbalanced, real
  class-balanced, synthetic with the subset's frequencies, synthetic balanced), judged shares and per-class quality.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from .. import data, generators, quality, runs, sources, train
from . import bias, privacy

# 2: copy excess against the held-out set's own threshold, the planted memoriser, learned generators across N,
#    FID / KID in two feature spaces, the class-balanced real arm, a budget that follows N (issue 16)
AUDITS_VERSION = 2
MEMORISER = "memoriser"           # the positive control's name in the grid (no training, no gen_steps)
CLOSEST_PAIRS = 8                 # closest sample / training-image pairs kept per cell and space


# ---------------------------------------------------------------- what a cell loads, once per process
@functools.lru_cache(maxsize=2)
def study_data(dataset: str, val_size: int, allow_download: bool = False):
    """(splits, pool, val): the train split minus the validation holdout every notebook uses (seed 0)."""
    splits = data.load(dataset, allow_download=allow_download)
    pool, val = data.holdout(splits.train, val_size, seed=0)
    return splits, pool, val


def extractor_spec(steps: int, model: str, augment: str, batch_size: int, seed: int = 0) -> dict:
    """The key fields of the domain feature extractor (the generators notebook builds it with the same ones)."""
    return {"steps": steps, "model": model, "augment": augment, "batch_size": batch_size, "seed": seed}


def contrastive_spec(steps: int, model: str, batch_size: int, seed: int = 0) -> dict:
    return {"steps": steps, "model": model, "batch_size": batch_size, "seed": seed}


def common_key(params) -> dict:
    """What every audits cell key holds: the data, the code version and both feature spaces."""
    return {"dataset": params.dataset, "val_size": params.val_size, "version": AUDITS_VERSION,
            "extractor": extractor_spec(params.extractor_steps, params.model, params.augment, params.batch_size),
            "contrastive": contrastive_spec(params.contrastive_steps, params.model, params.batch_size)}


def privacy_keys(params) -> list[dict]:
    """The privacy grid: each audited generator and the memoriser at every N of the sweep (fitted on the seed's
    subset), then the whole-pool zoo and the memoriser on the pool (the seed varies the samples only)."""
    common = {**common_key(params), "part": "privacy", "samples": params.audit_samples,
              "copy_quantile": params.copy_quantile, "memoriser_noise": privacy.MEMORISER_NOISE}

    def generator_fields(name, steps):
        return {} if name == MEMORISER else generators.cell_key(name, steps[name], params.gen_seed)
    return ([{**common, "generator": g, "n": n, "subset_seed": s, "seed": s,
              **generator_fields(g, params.audit_gen_steps)}
             for g in [*params.audit_generators, MEMORISER] for n in params.resolved_sizes() for s in params.seeds]
            + [{**common, "generator": g, "n": "all", "subset_seed": 0, "seed": s,
                **generator_fields(g, params.gen_steps)} for g in [*params.audit_zoo, MEMORISER]
               for s in params.seeds])


def bias_keys(params, num_classes: int) -> list[dict]:
    """The bias grid, generators x seeds; every arm's budget follows the imbalanced subset's size, which
    `bias.imbalanced_counts` gives exactly (`bias.imbalanced_indices` draws those counts for each seed)."""
    size = int(bias.imbalanced_counts(num_classes, params.bias_n, params.rare_classes, params.rare_fraction).sum())
    return [{**common_key(params), "part": "bias", "generator": g, "seed": s, "bias_n": params.bias_n,
             "rare_classes": sorted(params.rare_classes), "rare_fraction": params.rare_fraction,
             **generators.cell_key(g, params.gen_steps[g], params.gen_seed), "samples": params.audit_samples,
             "recipe": params.recipe_key(), "steps": params.steps_for(size)}
            for g in params.bias_generators for s in params.seeds]


@functools.lru_cache(maxsize=2)
def _domain(dataset, val_size, allow_download, steps, model, augment, batch_size, seed, device, progress):
    _, pool, val = study_data(dataset, val_size, allow_download)
    return quality.domain_extractor(pool, dataset, steps=steps, seed=seed, model=model, augment=augment,
                                    batch_size=batch_size, device=device, progress=progress, val=val)


@functools.lru_cache(maxsize=2)
def _contrastive(dataset, val_size, allow_download, steps, model, batch_size, seed, device, progress):
    _, pool, _ = study_data(dataset, val_size, allow_download)
    return quality.contrastive_extractor(pool, dataset, steps=steps, seed=seed, model=model, batch_size=batch_size,
                                         device=device, progress=progress)


def domain_extractor(key: dict, device: str = "auto", progress: bool = False, allow_download: bool = False):
    """The domain classifier named by `key["extractor"]` (trained once, cached on disk and per process)."""
    return _domain(key["dataset"], key["val_size"], allow_download, device=device, progress=progress,
                   **key["extractor"])


def contrastive_extractor(key: dict, device: str = "auto", progress: bool = False, allow_download: bool = False):
    return _contrastive(key["dataset"], key["val_size"], allow_download, device=device, progress=progress,
                        **key["contrastive"])


@functools.lru_cache(maxsize=4)
def _fitted(name, dataset, val_size, allow_download, n, subset_seed, steps, seed, device, progress):
    _, pool, _ = study_data(dataset, val_size, allow_download)
    return generators.fit_on_subset(name, pool, dataset=dataset, n=n, subset_seed=subset_seed, steps=steps,
                                    seed=seed, device=device, progress=progress)


def generator_for(key: dict, device: str = "auto", progress: bool = False, allow_download: bool = False):
    """(generator, indices into the pool) of a privacy key: the planted memoriser built on the same stratified
    subset a generator would get, or `generators.fit_on_subset` (trained once, cached)."""
    if key["generator"] == MEMORISER:
        _, pool, _ = study_data(key["dataset"], key["val_size"], allow_download)
        n = key["n"]
        idx = (np.arange(len(pool)) if n == "all"
               else data.stratified_indices(pool.labels.numpy(), int(n), seed=key["subset_seed"]))
        return privacy.Memoriser(pool.take(idx), noise=key["memoriser_noise"]), idx
    return _fitted(key["generator"], key["dataset"], key["val_size"], allow_download, key["n"], key["subset_seed"],
                   key["gen_steps"], key["gen_seed"], device, progress)


@functools.lru_cache(maxsize=4)
def _leave_one_out(dataset, val_size, allow_download, which, distance_device):
    """Pixel leave-one-out distances of the whole pool or of the validation split: they depend on the set alone, so
    every whole-pool model is held to the same thresholds (computed once per process)."""
    _, pool, val = study_data(dataset, val_size, allow_download)
    return privacy.leave_one_out((pool if which == "pool" else val).images, device=distance_device)


def _distance_device(device: str) -> torch.device:
    return train.resolve_device(device)


# ---------------------------------------------------------------- privacy
def privacy_cell(key: dict, cell_dir: Path, device: str = "auto", progress: bool = False,
                 allow_download: bool = False) -> dict:
    """Audit one generator at one N and seed (see the module docstring); side files: indices, per-sample distance
    ratios and the closest pairs per space."""
    options = {"device": device, "progress": progress, "allow_download": allow_download}
    splits, pool, val = study_data(key["dataset"], key["val_size"], allow_download)
    n, seed = key["n"], key["seed"]
    gen, idx = generator_for(key, **options)
    runs.save_npy(cell_dir / "indices.npy", idx)
    where = _distance_device(device)
    if n == "all":
        # the whole pool against the validation split; pixel space only: both feature spaces were trained on the
        # pool (the members), not on the validation images, so there members and non-members are not on equal footing
        members, nonmembers = pool.images, val.images
        count = key["samples"]
        loo = {"pixel": (_leave_one_out(key["dataset"], key["val_size"], allow_download, "pool", where),
                         _leave_one_out(key["dataset"], key["val_size"], allow_download, "val", where))}
        spaces = {"pixel": None}
    else:
        held = privacy.heldout_indices(pool.labels.numpy(), idx, seed=seed)
        runs.save_npy(cell_dir / "heldout_indices.npy", held)
        members, nonmembers = pool.images[torch.as_tensor(idx)], pool.images[torch.as_tensor(held)]
        count = max(key["samples"], privacy.SAMPLES_PER_IMAGE * len(idx))
        loo = {}
        spaces = {"pixel": None, "feature": domain_extractor(key, **options).embed}
    x = privacy.generate(gen, privacy.labels_like(pool.labels[torch.as_tensor(idx)], count, seed=seed), seed=seed)
    out = {"n_train": len(idx), **training_tail(gen)}
    for space, embed in spaces.items():
        train_nn, heldout_nn = loo.get(space, (None, None))
        report = privacy.audit(x, members, nonmembers, embed=embed, copy_quantile=key["copy_quantile"], space=space,
                               seed=seed, device=where, train_nn=train_nn, heldout_nn=heldout_nn)
        out.update({f"{space}_{k}": v for k, v in report.summary().items()})
        runs.save_npy(cell_dir / f"{space}_ratio.npy", report.ratio.numpy().astype(np.float32))
        pairs = privacy.closest_pairs(report, k=CLOSEST_PAIRS)
        runs.save_npy(cell_dir / f"{space}_pairs.npy",
                      np.stack([np.stack([x[i].mul(255).round().byte().numpy(), members[j].numpy()])
                                for i, j, _ in pairs]))
        out[f"{space}_pair_distances"] = [d for *_, d in pairs]
    if n == "all":
        out.update(feature_space_scores(key, x, val, **options))
    return out


def training_tail(gen) -> dict:
    """The generator's last logged training losses per phase and their change over the last fifth of the phase: the
    plateau evidence of a learned generator (a relative change near 0: more steps would not move it)."""
    out = {}
    for phase, log in (getattr(gen, "history", None) or {}).items():
        if not (isinstance(log, list) and len(log) >= 5 and all(isinstance(p, (list, tuple)) for p in log)):
            continue
        last, earlier = log[-1][1], log[-max(2, len(log) // 5)][1]
        out[f"gen_{phase}_final"] = float(last)
        out[f"gen_{phase}_change_last_fifth"] = float((last - earlier) / abs(earlier)) if earlier else float("nan")
    return out


def feature_space_scores(key: dict, samples: torch.Tensor, reference, device: str = "auto", progress: bool = False,
                         allow_download: bool = False) -> dict:
    """FID and KID of float `samples` (as generated: no uint8 round-trip) against the `reference` real images, in
    the domain classifier's space (`domain_*`) and in the contrastive encoder's (`contrastive_*`)."""
    options = {"device": device, "progress": progress, "allow_download": allow_download}
    out = {}
    for space, extractor in (("domain", domain_extractor(key, **options)),
                             ("contrastive", contrastive_extractor(key, **options))):
        real_f, fake_f = extractor.embed(reference.images), extractor.embed(samples)
        out[f"{space}_fid"] = quality.fid(real_f, fake_f)
        out[f"{space}_kid"] = quality.kid(real_f, fake_f, seed=key["seed"])[0]
    return out


def describe_privacy(key: dict, m: dict) -> str:
    def both(name, fmt):
        return " / ".join(format(m[f"{s}_{name}"], fmt) if f"{s}_{name}" in m else "—" for s in privacy.SPACES)
    return (f"privacy {key['generator']} n={key['n']} seed={key['seed']}: copy excess {both('copy_excess', '+.1%')}, "
            f"attack AUC {both('mia_auc', '.3f')} (pixel / feature)")


# ---------------------------------------------------------------- bias
def bias_cell(key: dict, cell_dir: Path, device: str = "auto", progress: bool = False,
              allow_download: bool = False) -> dict:
    """One generator on one seed's imbalanced subset: four classifier arms scored per class, judged minority
    shares, per-class precision / recall. Side file: the subset's indices."""
    options = {"device": device, "progress": progress, "allow_download": allow_download}
    splits, pool, val = study_data(key["dataset"], key["val_size"], allow_download)
    name, seed, k = key["generator"], key["seed"], splits.num_classes
    idx = bias.imbalanced_indices(pool.labels.numpy(), key["bias_n"], key["rare_classes"], key["rare_fraction"],
                                  seed=seed, num_classes=k)
    subset = pool.take(idx)
    runs.save_npy(cell_dir / "indices.npy", idx)
    data_key = {"dataset": key["dataset"], "pool_size": len(pool), "imbalanced": True, "per_class": key["bias_n"],
                "rare_classes": key["rare_classes"], "rare_fraction": key["rare_fraction"], "subset_seed": seed}
    gen = generators.fit_cached(name, subset, data_key=data_key, config={}, steps=key["gen_steps"],
                                seed=key["gen_seed"], device=device, progress=progress, num_classes=k)
    freqs = bias.class_frequencies(subset.labels, k)
    recipe = key["recipe"]
    cfg = train.TrainConfig(steps=key["steps"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                            augment=recipe["augment"], tta=recipe["tta"], seed=seed, device=device, progress=progress)
    arms = {"real": sources.ImageSetSource(subset), "real_balanced": bias.BalancedResampler(subset),
            "synthetic_matched": sources.GeneratorStream(gen, class_probs=freqs),
            "synthetic_balanced": sources.GeneratorStream(gen)}
    out = {"subset_size": len(subset)}
    for arm, source in arms.items():
        # val=None: nothing is selected in this audit, and scoring 5,000 more images with flip_shift TTA (6 views)
        # for 12 classifiers costs ~20 s on 2 cores
        scored = train.classifier_cell(source, cfg, recipe["model"], tuple(pool.images.shape[1:]), k, None,
                                       splits.test)
        per_class = scored["per_class_test_accuracy"]
        out[f"{arm}_accuracy"], out[f"{arm}_per_class"] = scored["test_accuracy"], per_class
        out[f"{arm}_train_seconds"] = scored["train_seconds"]
        out[f"{arm}_majority"], out[f"{arm}_minority"] = bias.group_means(per_class, key["rare_classes"])
        out[f"{arm}_gap"] = out[f"{arm}_majority"] - out[f"{arm}_minority"]
    extractor = domain_extractor(key, **options)

    def judge(images):
        return bias.predict_labels(extractor.classifier, images)

    val_confusion = bias.confusion(judge(val.images), val.labels, k)
    for sampling, probs in (("uniform", torch.ones(k)), ("frequencies", freqs)):
        shares = bias.generation_shares(gen, judge, probs, key["rare_classes"], count=key["samples"], seed=seed,
                                        real_confusion=val_confusion)
        out.update({f"{sampling}_{name_}": v for name_, v in shares.items()})
    quality_per_class = bias.per_class_quality(extractor.embed, val, gen, seed=seed)
    for value in ("precision", "recall"):
        out[f"{value}_per_class"] = [quality_per_class[c][value] for c in range(k)]
        out[f"{value}_gap"] = bias.majority_minority_gap(out[f"{value}_per_class"], key["rare_classes"])
    return out


def describe_bias(key: dict, m: dict) -> str:
    return (f"bias {key['generator']} seed={key['seed']}: majority-minority gap real {m['real_gap']:.1%}, real "
            f"balanced {m['real_balanced_gap']:.1%}, synthetic matched {m['synthetic_matched_gap']:.1%}, balanced "
            f"{m['synthetic_balanced_gap']:.1%}")
