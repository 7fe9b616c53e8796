"""How long will `make reproduce PROFILE=...` take here? The work a profile implies, times per-unit costs measured now.

    python -m synthstudy.reproduce --profile paper --estimate    # print the estimate, run nothing
    python -m synthstudy.estimate --profile paper                # the same
    python -m synthstudy.estimate --profile quick --validate     # against the timings in results/quick/reproduce.jsonl

`make reproduce` prints the same table before it starts any notebook.

**The work** (`plan`): each study notebook's grid is rebuilt from its validated parameters (notebook defaults <
profile < overrides, as `reproduce.check_parameters` combines them) with the package functions the notebooks call
(`cells.classifier_key`, `contrastive.multiview_key`, `generators.cell_key`, `config.*Params.steps_for` ...), and
turned into amounts of a few units of work: classifier training images, forward passes (evaluation views and
features), contrastive pairs, generated images and generator training steps per family, nearest-neighbour distance
multiply-adds, and fixed costs per cell and per notebook. What runs once counts once, in the study's order: the
scaling notebook's real arm is the baseline's cells, CAS reuses the baseline's and scaling's, every whole-pool
generator and the domain extractor are trained once (the cache), a generator fitted on the same N-image subset with
the same budget in scaling and in audits is one fit. Where a cell's identity depends on a value chosen at run time
(the multiview notebook's σ*) the cells are counted, not their identities (σ* is any of `sigmas` until the sweep is
recorded, then the one the notebook picks).

**The costs** (`calibrate`): a short timing of each unit on the device the run will use (`device: auto` -> a GPU
when there is one): a few classifier steps at the profile's model and batch, forward passes, contrastive pairs and
pixel augmentations, a short fit and batches of samples (at the classifier's batch and at 500) of every generator
family the profile uses, FID / KID / PRDC, a distance matrix. About 20 s on 2 idle CPU cores. Where this machine's
records (any profile's, `record_costs`) time a unit with the same classifier, data and generator code, their
median is used instead: a long run's own rates beat a 20-s sample, and a calibration on a busy machine measures
units 10-40x slower (measured: two processes with 2 threads each on the 2 cores), hence the busy-CPU note.

**Resuming**: by default what is *left* is estimated: recorded cells (classifier and encoder cells by their exact
keys, audits cells by the notebook's keys, quality cells by their fields) and the generators and extractors in
results/cache cost nothing; `--first-run` counts everything.

**How far to trust it**: checked against the first quick run from an empty cache on the 2-core reference VM (the
notebook times in results/quick/reproduce.jsonl; `--validate` prints the comparison), unit costs from a 22-s
calibration on the idle machine: estimated / measured 0.82 (baseline: 6 of its 24 cells trained at 47-69% of the
idle rate while other processes shared the CPU), 0.98 (generators), 0.96 (scaling), 0.98 (multiview), 0.86 for
the audits' privacy part (its first run stopped at a plotting bug; each bias cell of the resumed run: 63 s
estimated, 64-66 s measured); total 0.93. The calibrated unit costs were 0.8-1.1x the rates in that run's records
(classifier training and evaluation, contrastive pairs, generator steps, flow and cGAN sampling), except cVAE
sampling (0.6x: its record times 5,000 samples with the first call's warm-up) and PCA-Gaussian sampling
(negligible either way). Read the total as ±25%.
"""
from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from dataclasses import dataclass, field

from . import config

# Built-in datasets' image shape and test-split size, known without loading them (an image folder is loaded).
DATASET_FACTS = {"fashion_mnist": ((1, 28, 28), 10000), "digits": ((1, 8, 8), 449), "cifar10": ((3, 32, 32), 10000)}

# ---------------------------------------------------------------- fixed costs, measured on the reference machine
# The 2-core AVX-512 VM ("Intel(R) Xeon(R) Processor", 2 threads) of the README, first quick run from an empty
# cache at 4a68bb6 (2026-11-26). measured: a notebook's wall time less its cells' seconds (and, for the generators
# notebook, the domain extractor's training) was 7 s (baseline), 8 s (generators), 10 s (scaling), 11 s (multiview):
# kernel start, imports, data, tables and figures.
NOTEBOOK_SECONDS = 10.0
# measured: a baseline cell's seconds less its training and its evaluation (90,000 views at the calibrated 7.4e-5 s)
# were 0.1-0.5 s (model build, subset, indices, record); a multiview cell's less training and evaluation, ~0.1 s.
CELL_SECONDS = 0.3

UNIT_NAMES = {
    "train_image": "classifier training images (forward, backward, augmentation)",
    "forward_image": "images through a classifier or encoder without gradients (evaluation views, features)",
    "pair": "contrastive pairs trained (two views forward and backward, projection, loss)",
    "augment_image": "pixel augmentations of a contrastive view (random resized crop, flip, jitter)",
    "distance": "multiply-adds of nearest-neighbour distance matrices",
    "probe_image": "images a linear probe is fitted on (100 L-BFGS iterations)",
    "quality_pair": "real x generated image pairs scored by FID, KID and PRDC",
    "pca_image": "images a PCA-Gaussian is fitted on",
    "cell": "grid cells (fixed cost each)",
    "notebook": "notebooks (fixed cost each)",
}


def unit_name(unit: str) -> str:
    kind, _, family = unit.partition(":")
    if kind == "sample":
        return f"images generated by {family} in batches of the classifier's (streams, mixes, views)"
    if kind == "sample500":
        return f"images generated by {family} in batches of 500 (pools, quality, audits)"
    if kind == "gen_step":
        return f"{family} training steps"
    return UNIT_NAMES[unit]


@dataclass
class NotebookPlan:
    """The work one notebook adds to the study's run: amounts per unit, and what was counted (for the table)."""

    name: str
    work: Counter = field(default_factory=Counter)       # unit -> amount
    counts: Counter = field(default_factory=Counter)     # "classifier cells" -> number (new work only)
    reused: Counter = field(default_factory=Counter)     # cells or models another notebook already made
    classifier_keys: list = field(default_factory=list)  # the classifier cells this notebook trains


@dataclass
class Seen:
    """What earlier notebooks of the run already computed or cached (identities), so it counts once. With `profile`,
    a cell whose record is already on disk (results/<profile>/...) costs nothing: the run will skip it."""

    classifier: set = field(default_factory=set)
    generators: set = field(default_factory=set)
    extractors: set = field(default_factory=set)
    profile: str | None = None
    cached: set = field(default_factory=set)         # generators and extractors in results/cache (`cache_index`)

    def recorded(self, notebooks, key: dict) -> bool:
        from . import runs
        return self.profile is not None and any(runs.find_record(self.profile, nb, key) is not None
                                                for nb in dict.fromkeys(notebooks))

    def recorded_like(self, notebook: str, fields: dict) -> bool:
        """A finished record in the notebook's run whose key holds these values (for keys with a part this module
        cannot rebuild, such as the data hash in a quality cell's extractor key)."""
        import json

        from .runs import results_root
        if self.profile is None:
            return False
        folder = results_root() / self.profile / notebook / "cells"
        for path in folder.glob("*/record.json"):
            key = json.loads(path.read_text())["key"]
            if all(key.get(k) == (v if not isinstance(v, dict) else {**key.get(k, {}), **v})
                   for k, v in fields.items()):
                return True
        return False


# ---------------------------------------------------------------- parameters
def parameters(profile: str, overrides: dict | None = None, notebooks=None) -> dict:
    """{notebook: validated parameters} as the run will see them (`reproduce.notebook_params`)."""
    from . import reproduce
    names = list(notebooks or reproduce.STUDY)
    return {name: reproduce.notebook_params(name, profile, overrides or {})[1] for name in names
            if name in reproduce.STUDY}


def dataset_facts(params) -> tuple[tuple, int]:
    """(image shape, test-split size) of the parameters' dataset."""
    if params.dataset in DATASET_FACTS:
        return DATASET_FACTS[params.dataset]
    from . import data
    splits = data.load(params.dataset, data_root=getattr(params, "data_root", "") or None,
                       image_size=getattr(params, "image_size", 64))
    return tuple(splits.image_shape), len(splits.test)


def tta_views(tta: str, augment: str) -> int:
    """Forward passes per scored image (`train.tta_logits`): the image, its mirror, and 1-px shifts of each."""
    views = 1 + (tta in ("flip", "flip_shift") and "flip" in augment)
    return views * 3 if tta == "flip_shift" and "crop" in augment else views


# ---------------------------------------------------------------- counting the work
class _Counter:
    """Adds a notebook's work to its plan, skipping what `seen` says was already done."""

    def __init__(self, plan: NotebookPlan, seen: Seen, params):
        self.plan, self.seen, self.P = plan, seen, params
        self.shape, self.test_size = dataset_facts(params)
        self.pixels = math.prod(self.shape)
        self.pool = config.pool_size(params)
        self.val = params.val_size

    def add(self, unit: str, amount: float) -> None:
        if amount:
            self.plan.work[unit] += amount

    def cell(self, kind: str) -> None:
        self.plan.counts[kind] += 1
        self.add("cell", 1)

    def fit(self, family: str, n, subset_seed, steps: int, imbalanced: tuple = ()) -> None:
        """One generator fit on n images (n == the pool: the shared whole-pool model), once per identity (the
        generator cache's: `generators.fit_on_subset`, or the bias audit's imbalanced subset)."""
        from . import generators
        if generators.is_pretrained(family):
            return                                    # loaded, not trained (its load time is not modelled)
        whole = n == "all" or n == self.pool
        data = ("imbalanced", *imbalanced) if imbalanced else ("all" if whole else int(n),)
        ident = (family, self.P.dataset, self.pool, *data, 0 if whole else subset_seed, steps,
                 getattr(self.P, "gen_seed", 0))
        if ident in self.seen.generators:
            self.plan.reused["generator fits"] += 1
            return
        self.seen.generators.add(ident)
        if ident in self.seen.cached:
            self.plan.reused["cached generators"] += 1
            return
        self.plan.counts["generator fits"] += 1
        if family == "pca_gaussian":
            self.add("pca_image", self.pool if whole else n)
        else:
            self.add(f"gen_step:{family}", steps)

    def sample(self, family: str, count: float, batches_of_500: bool = False) -> None:
        """Generated images: per classifier batch (streams, mixes, views) or in batches of 500 (`sample_pool`,
        `privacy.generate`); the two rates differ (measured here: cGAN 1.5e-4 s per image at 128, 6e-4 at 500)."""
        if family != "memoriser":
            self.add(f"{'sample500' if batches_of_500 else 'sample'}:{family}", count)

    def classifier(self, key: dict) -> None:
        """One classifier cell (`cells.classifier`): train, score validation and test with TTA."""
        from . import runs, sources
        ident = runs.stable_hash(key)
        if ident in self.seen.classifier:
            self.plan.reused["classifier cells"] += 1
            return
        self.seen.classifier.add(ident)
        self.plan.classifier_keys.append(key)
        if self.seen.recorded((self.plan.name, "baseline", "scaling"), key):
            self.plan.reused["finished cells"] += 1
            return
        steps, batch, arm = key["steps"], key["batch_size"], key["arm"]
        trained = steps * batch
        if arm != "real":
            self.fit(key["generator"], key["n"], key["seed"], key["gen_steps"])
        if arm == "stream":
            self.sample(key["generator"], steps * batch)
        elif arm == "pool":
            self.sample(key["generator"], key["m"], batches_of_500=True)
        elif arm == "mix":
            extra = sources.extra_synthetic(batch, key["synthetic_fraction"])
            trained += steps * extra                  # the real batch plus the synthetic share
            self.sample(key["generator"], steps * extra)
        elif arm == "mix_replace":
            self.sample(key["generator"], steps * round(key["synthetic_fraction"] * batch))
        self.add("train_image", trained)
        self.add("forward_image", (self.val + self.test_size) * tta_views(key["tta"], key["augment"]))
        self.cell("classifier cells")

    def domain_extractor(self, steps: int, model: str, augment: str, batch_size: int, scored: bool) -> None:
        """The domain classifier (`quality.domain_extractor`): trained once, cached; scored on validation on load."""
        if scored:
            self.add("forward_image", self.val)
        if self._extractor_to_train(("domain", self.P.dataset, self.pool, steps, model, augment, batch_size)):
            self.add("train_image", steps * batch_size)

    def contrastive_extractor(self, steps: int, model: str, batch_size: int) -> None:
        if self._extractor_to_train(("simclr", self.P.dataset, self.pool, steps, model, batch_size)):
            self.add("pair", steps * batch_size)
            self.add("augment_image", 2 * steps * batch_size)    # two pixel views of each pool image

    def _extractor_to_train(self, ident: tuple) -> bool:
        """Whether this run trains the feature extractor `ident`: not if an earlier notebook of the run already
        counted it, nor if it is cached on disk (each case counted as reused)."""
        if ident in self.seen.extractors:
            self.plan.reused["feature extractors"] += 1
            return False
        self.seen.extractors.add(ident)
        if ident in self.seen.cached:
            self.plan.reused["cached extractors"] += 1
            return False
        self.plan.counts["feature extractors"] += 1
        return True

    def distances(self, rows: float, cols: float, dims: float) -> None:
        self.add("distance", rows * cols * dims)


FEATURE_DIM = 128          # the `cnn` backbone's features (models.ConvNet's last width); distances in that space


def plan_classifiers(name: str, keys: list[dict], P, seen: Seen) -> NotebookPlan:
    """A notebook whose grid is classifier cells only (baseline, scaling)."""
    plan = NotebookPlan(name)
    c = _Counter(plan, seen, P)
    for key in keys:
        c.classifier(key)
    return plan


def plan_baseline(P, seen: Seen) -> NotebookPlan:
    from . import cells
    return plan_classifiers("baseline", cells.baseline_keys(P), P, seen)


def plan_generators(P, seen: Seen) -> NotebookPlan:
    from . import cells
    plan = NotebookPlan("generators")
    c = _Counter(plan, seen, P)
    c.domain_extractor(P.extractor_steps, P.model, P.augment, P.batch_size, scored=False)
    q = P.quality_samples
    ref = min(c.val, q)
    for g in P.generator_names:                       # quality cells: fit, sample, embed, FID / KID / PRDC
        # the notebook's key holds the extractor's full key (with a data hash): match the fields known here
        if seen.recorded_like("generators", cells.quality_key(P, g, {
                "steps": P.extractor_steps, "model": P.model, "augment": P.augment, "batch_size": P.batch_size})):
            plan.reused["finished cells"] += 1
            continue
        c.fit(g, "all", 0, P.generator_steps(g))
        c.sample(g, q, batches_of_500=True)
        c.add("forward_image", q + ref)
        # FID, KID, PRDC (numpy k-NN matrices, sorted) overall, then within each of ~10 classes: q x ref x 1.1
        c.add("quality_pair", q * ref * 1.1)
        c.cell("quality cells")
    for key in cells.cas_keys(P):
        c.classifier(key)
    return plan


def plan_scaling(P, seen: Seen) -> NotebookPlan:
    from . import cells
    return plan_classifiers("scaling", cells.scaling_keys(P), P, seen)


def multiview_keys(P, sigma_star: float | None = None) -> list[dict]:
    """The multiview notebook's encoder cells, deduplicated as its grids run them. σ* is chosen at run time, on the
    sweep's validation scores: pass it when known (`sigma_star_from_records`); the placeholder `sigmas[0]` gives
    the same number of new cells whichever σ the validation picks."""
    from . import analysis_multiview as A
    from . import runs
    star = P.sigmas[0] if sigma_star is None else sigma_star
    keys = A.reference_keys(P) + A.sweep_keys(P) + A.synthetic_keys(P, star) + A.pool_keys(P, star)
    return list({runs.stable_hash(k): k for k in keys}.values())   # a grid that meets a finished cell loads it


def sigma_star_from_records(P, profile: str) -> float | None:
    """σ* as the notebook chooses it (`analysis_multiview.choose_sigma`: best mean validation probe accuracy of the
    σ sweep) once every sweep cell is recorded under results/<profile>/multiview; None before."""
    import pandas as pd

    from . import analysis_multiview, runs
    records = [runs.find_record(profile, "multiview", k) for k in analysis_multiview.sweep_keys(P)]
    if any(r is None for r in records):
        return None
    table = analysis_multiview.with_arms(pd.DataFrame([runs.flatten(r) for r in records]), P.mv_steps)
    return analysis_multiview.choose_sigma(table)


def plan_multiview(P, seen: Seen) -> NotebookPlan:
    plan = NotebookPlan("multiview")
    c = _Counter(plan, seen, P)
    probe = c.pool if P.mv_probe_size == "all" else min(P.mv_probe_size, c.pool)
    val = c.val if P.mv_eval_size == "all" else min(P.mv_eval_size, c.val)
    test = c.test_size if P.mv_eval_size == "all" else min(P.mv_eval_size, c.test_size)
    for g in dict.fromkeys([P.generator, P.control_generator]):
        c.fit(g, "all", 0, P.gen_steps[g])            # the views' generators: the whole-pool models at gen_steps
    star = sigma_star_from_records(P, seen.profile) if seen.profile else None
    for key in multiview_keys(P, star):
        if seen.recorded(("multiview",), key):
            plan.reused["finished cells"] += 1
            continue
        if key["source"] != "none":
            pairs = key["steps"] * key["batch_size"]
            c.add("pair", pairs)
            if key["source"] == "synthetic":             # latent views: anchor and neighbour decoded every pair
                c.sample(key["generator"], pairs if key["views"] == "pixel" else 2 * pairs)
            if "pixel" in key["views"]:
                c.add("augment_image", 2 * pairs)
        c.add("forward_image", probe + val + test)      # frozen features of the probe set and both scored splits
        c.add("probe_image", probe)
        c.distances(val + test, probe, FEATURE_DIM)   # the k-NN vote
        c.cell("encoder cells")
    return plan


def audits_keys(P) -> tuple[list[dict], list[dict]]:
    """(privacy keys, bias keys): the audits notebook's grids, built by the same functions it calls, so that a
    finished cell is found by its key."""
    from . import data
    from .audits import cells
    return cells.privacy_keys(P), cells.bias_keys(P, len(data.class_names(P.dataset, P.data_root or None)))


def plan_audits(P, seen: Seen) -> NotebookPlan:
    from .audits import privacy
    plan = NotebookPlan("audits")
    c = _Counter(plan, seen, P)
    c.domain_extractor(P.extractor_steps, P.model, P.augment, P.batch_size, scored=True)
    c.contrastive_extractor(P.contrastive_steps, P.model, P.batch_size)
    reference = min(c.pool, 10000)                   # the encoder's k-NN check, the judge on the test split
    c.add("forward_image", reference + c.val + c.test_size)
    c.distances(c.val, reference, FEATURE_DIM)
    loo = 2000                                        # privacy.leave_one_out's default loo_queries
    privacy_keys, bias_keys = audits_keys(P)
    whole_pool = False
    for key in privacy_keys:
        if seen.recorded(("audits",), key):
            plan.reused["finished cells"] += 1
            continue
        g, n, s = key["generator"], key["n"], key["seed"]
        if n == "all":                                # a whole-pool model against pool and validation, pixels
            if g != "memoriser":
                c.fit(g, "all", 0, key["gen_steps"])
            count = key["samples"]
            c.sample(g, count, batches_of_500=True)
            c.distances(count, c.pool + 2 * c.val, c.pixels)
            c.add("forward_image", 2 * (c.val + count))   # FID / KID in both feature spaces
            if not whole_pool:                        # leave-one-out thresholds of pool and validation, once
                c.distances(loo, c.pool + c.val, c.pixels)
                whole_pool = True
        else:                                         # the N sweep: pixel and feature space
            if g != "memoriser":
                c.fit(g, n, s, key["gen_steps"])
            count = max(key["samples"], privacy.SAMPLES_PER_IMAGE * n)
            c.sample(g, count, batches_of_500=True)
            c.add("forward_image", count + 2 * n)     # samples, members, held-out images into feature space
            for dims in (c.pixels, FEATURE_DIM):
                c.distances(count, 2 * n, dims)
                c.distances(2 * min(n, loo), n, dims)
        c.cell("privacy cells")
    views = tta_views(P.tta, P.augment)
    for key in bias_keys:
        if seen.recorded(("audits",), key):
            plan.reused["finished cells"] += 1
            continue
        g, steps = key["generator"], key["steps"]
        subset = P.bias_n * 10                        # about (the rare classes are few): the fit's cost is in steps
        c.fit(g, subset, key["seed"], key["gen_steps"],
              imbalanced=(P.bias_n, tuple(key["rare_classes"]), P.rare_fraction))
        c.add("train_image", 4 * steps * P.batch_size)         # four arms, one recipe
        c.add("forward_image", 4 * c.test_size * views)
        c.sample(g, 2 * steps * P.batch_size)                  # the two synthetic arms' streams
        c.sample(g, 2 * P.audit_samples + c.val, batches_of_500=True)   # judged shares, per-class quality
        c.add("forward_image", 2 * P.audit_samples + 3 * c.val)
        c.add("cell", 3)                                       # three more classifiers than one cell
        c.cell("bias cells")
    return plan


def cache_index() -> set:
    """The identities (`_Counter.fit`, `domain_extractor`, `contrastive_extractor`) of the trained generators and
    feature extractors in results/cache, read from their key.json (a generator of an older code version does not
    count: it would be retrained)."""
    import json

    from . import generators
    from .runs import results_root
    found = set()
    for path in (results_root() / "cache" / "generators").glob("*/key.json"):
        key = json.loads(path.read_text())
        name, d = key.get("name"), key.get("data", {})
        if name not in generators.available() or generators.identity(name)["version"] != key.get("version"):
            continue
        data = (("imbalanced", d.get("per_class"), tuple(d.get("rare_classes") or ()), d.get("rare_fraction"))
                if d.get("imbalanced") else (d.get("n"),))
        found.add((name, d.get("dataset"), d.get("pool_size"), *data, d.get("subset_seed"), key.get("steps"),
                   key.get("seed")))
    for path in (results_root() / "cache" / "extractors").glob("*/key.json"):
        key = json.loads(path.read_text())
        if key.get("seed") != 0:
            continue
        if key.get("kind") == "simclr":
            found.add(("simclr", key["dataset"], key["pool_size"], key["steps"], key["model"], key["batch_size"]))
        else:
            found.add(("domain", key["dataset"], key["pool_size"], key["steps"], key["model"], key["augment"],
                       key["batch_size"]))
    return found


PLANNERS = {"baseline": plan_baseline, "generators": plan_generators, "scaling": plan_scaling,
            "multiview": plan_multiview, "audits": plan_audits}


def plan(params_by_notebook: dict, profile: str | None = None) -> list[NotebookPlan]:
    """The study's work, notebook by notebook in run order, each counting only what earlier ones did not do. With
    `profile`, classifier and encoder cells already recorded under results/<profile>/ and the generators and
    feature extractors in results/cache are left out (what a resumed run skips); without, the work of a first run
    (every cell, every generator)."""
    from . import runs
    seen = Seen(profile=profile, cached=cache_index() if profile else set())
    plans = []
    for name in runs.STUDY_NOTEBOOKS:
        if name in params_by_notebook:
            p = PLANNERS[name](params_by_notebook[name], seen)
            p.work["notebook"] += 1
            plans.append(p)
    return plans


# ---------------------------------------------------------------- unit costs, measured here
@dataclass
class Costs:
    """Seconds per unit of work on one machine, and how they were obtained."""

    seconds: dict                                    # unit -> seconds per unit
    source: str                                      # "calibration (18 s)" ...
    machine: str
    calibration_seconds: float = 0.0

    def of(self, work: Counter) -> float:
        return sum(amount * self.seconds.get(unit, 0.0) for unit, amount in work.items())

    def by_unit(self, work: Counter) -> Counter:
        return Counter({unit: amount * self.seconds.get(unit, 0.0) for unit, amount in work.items()})


def machine(device) -> str:
    """The machine in words: the GPU's name, or the CPU model and the threads torch uses."""
    import torch

    from .runs import cpu_model
    from .train import cpu_threads
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)} (CPU {cpu_model()}, {cpu_threads()} threads)"
    return f"CPU {cpu_model()}, {cpu_threads()} threads ({device.type})"


def _sync(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _per_unit(run, units: float, device, target: float) -> float:
    """Seconds per unit of `run(1)` (which does `units` units): a warm-up, then timed reps for about `target`
    seconds (3 to 50), their median (what a long run meets; measured here: the fastest rep ran the contrastive loop
    ~5% faster than the quick run's cells did)."""
    import statistics
    run(1)
    _sync(device)
    times: list[float] = []
    while len(times) < 3 or (sum(times) < target and len(times) < 50):
        start = time.perf_counter()
        run(1)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / units


def calibrate(params_by_notebook: dict, plans: list[NotebookPlan], target: float = 1.0) -> Costs:
    """Time every unit the plans use on the device the run will use; `target` seconds per unit (more for the
    generators' steps, which are timed as the difference of two short fits)."""
    import torch

    from . import contrastive, generators, models, sources, train
    started = time.perf_counter()
    P = next(iter(params_by_notebook.values()))
    device = train.resolve_device(P.device)
    recipe = next((p for p in params_by_notebook.values() if hasattr(p, "steps_for")), None)
    model_name = recipe.model if recipe else P.model
    batch = recipe.batch_size if recipe else 128
    augment, tta = (recipe.augment, recipe.tta) if recipe else ("flip_crop", "none")
    shape, _ = dataset_facts(P)
    classes = 10
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4096, *shape), dtype=torch.uint8, generator=g)
    labels = torch.arange(len(images)) % classes
    from .data import ImageSet
    fake = ImageSet(images, labels)
    units = set().union(*(p.work for p in plans))
    seconds = {}

    net = models.create_model(model_name, shape[0], classes, shape[-1], seed=0)
    source = sources.ImageSetSource(fake)

    def train_steps(reps):
        cfg = train.TrainConfig(steps=4 * reps, batch_size=batch, augment=augment, tta=tta, device=str(device),
                                progress=False)
        train.fit(net, source, cfg)
    seconds["train_image"] = _per_unit(train_steps, 4 * batch, device, target)
    cfg = train.TrainConfig(steps=1, tta="none", device=str(device), progress=False)
    trained = net.to(device)
    seconds["forward_image"] = _per_unit(lambda reps: [train.predict_logits(trained, images[:2048], cfg)
                                                       for _ in range(reps)], 2048, device, target)
    if "pair" in units:
        mv = params_by_notebook.get("multiview")
        pair_batch = mv.mv_batch_size if mv else batch
        encoder = contrastive.create_encoder(model_name, shape[0], shape[-1], seed=0, num_classes=classes)
        augment_views = contrastive.PixelAugment.for_dataset(P.dataset, shape[-1])
        views = contrastive.RealViews(fake, augment_views)
        x = images[:2 * pair_batch].float().div(255).to(device)

        def augment_pairs(reps):
            for _ in range(reps):
                augment_views(x, g)
        seconds["augment_image"] = _per_unit(augment_pairs, len(x), device, target / 4)

        def pairs(reps):
            contrastive.fit(encoder, views, contrastive.ContrastiveConfig(
                method="simclr", steps=2 * reps, batch_size=pair_batch, seed=0, device=str(device), progress=False))
        pixel_pair = _per_unit(pairs, 2 * pair_batch, device, target)
        # the loop's pair less its two augmentations: latent views pay decoding instead
        seconds["pair"] = max(pixel_pair - 2 * seconds["augment_image"], pixel_pair / 2)
    if "probe_image" in units:
        feats, y = torch.randn(2000, FEATURE_DIM, generator=g), labels[:2000]
        seconds["probe_image"] = _per_unit(lambda reps: [contrastive.LinearProbe.fit(feats, y)
                                                         for _ in range(reps)], 2000, device, target)
    if "distance" in units:
        from .audits import privacy
        a = torch.rand(1024, math.prod(shape), generator=g)
        b = torch.rand(4096, math.prod(shape), generator=g)
        seconds["distance"] = _per_unit(lambda reps: [privacy.cross_nearest(a, b, device=device)
                                                      for _ in range(reps)], a.numel() * len(b), device, target)
    if "quality_pair" in units:
        from . import quality
        real_f, fake_f = torch.randn(1000, FEATURE_DIM, generator=g), torch.randn(1000, FEATURE_DIM, generator=g)

        def score(reps):
            for _ in range(reps):
                quality.fid(real_f, fake_f), quality.kid(real_f, fake_f), quality.prdc(real_f, fake_f)
        seconds["quality_pair"] = _per_unit(score, len(real_f) * len(fake_f), device, target)
    families = sorted({u.partition(":")[2] for u in units if u.startswith(("sample:", "sample500:", "gen_step:"))}
                      | ({"pca_gaussian"} if "pca_image" in units else set()))
    for family in families:
        if generators.is_pretrained(family):
            continue
        gen = generators.create(family, shape, classes)
        if family == "pca_gaussian":
            small, large = fake.take(torch.arange(1024)), fake
            t = {}
            for part in (small, large):
                start = time.perf_counter()
                gen.fit(part, steps=1, seed=0, device=str(device), progress=False)
                t[len(part)] = time.perf_counter() - start
            seconds["pca_image"] = max(t[len(large)] - t[len(small)], 1e-9) / (len(large) - len(small))
        else:
            # fits of two lengths (after a warm-up, the faster of two each): their difference is steps alone; the
            # setup, the flow's encoding pass between its phases and cGAN's BatchNorm pass cancel
            subset = fake.take(torch.arange(1024))
            short, long_ = 4, 4 + max(4, int(8 * target))
            gen.fit(subset, steps=short, seed=0, device=str(device), progress=False)
            t = {short: math.inf, long_: math.inf}
            for steps in (short, long_, short, long_):
                start = time.perf_counter()
                gen.fit(subset, steps=steps, seed=0, device=str(device), progress=False)
                t[steps] = min(t[steps], time.perf_counter() - start)
            seconds[f"gen_step:{family}"] = max(t[long_] - t[short], 1e-6) / (long_ - short)
        gen = gen.to(device)
        for unit, size in ((f"sample:{family}", batch), (f"sample500:{family}", 500)):
            wanted = torch.arange(size) % classes

            def draw(reps, gen=gen, wanted=wanted):
                for _ in range(reps):
                    gen.sample(wanted, g)
            seconds[unit] = _per_unit(draw, size, device, target / 4)
    seconds["cell"], seconds["notebook"] = CELL_SECONDS, NOTEBOOK_SECONDS
    took = time.perf_counter() - started
    return Costs(seconds, f"measured now in {took:.0f} s", machine(device), took)


# ---------------------------------------------------------------- the table
UNCERTAINTY = 0.25        # the band the quick profile's validation run fell within (README, "How long")

GROUPS = {"train_image": "classifier training", "forward_image": "evaluation and features",
          "pair": "contrastive training", "augment_image": "contrastive training",
          "distance": "nearest-neighbour distances", "probe_image": "linear probes", "quality_pair": "FID / KID / PRDC",
          "pca_image": "PCA-Gaussian fits", "cell": "per-cell overhead", "notebook": "per-notebook overhead"}


def group(unit: str) -> str:
    kind, _, family = unit.partition(":")
    return ({"sample": f"{family} sampling", "sample500": f"{family} sampling", "gen_step": f"{family} training"}
            .get(kind) or GROUPS[unit])


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Estimate:
    profile: str
    plans: list
    costs: Costs
    resumed: bool                     # finished cells on disk were left out

    def seconds(self) -> dict:
        return {p.name: self.costs.of(p.work) for p in self.plans}

    def total(self) -> float:
        return sum(self.seconds().values())

    def shares(self) -> list[tuple[str, float]]:
        """(what, seconds) over the whole study, largest first: where the time goes."""
        by = Counter()
        for p in self.plans:
            for unit, secs in self.costs.by_unit(p.work).items():
                by[group(unit)] += secs
        return by.most_common()

    def table(self) -> str:
        seconds = self.seconds()
        rows = [f"{'notebook':<11} {'cells':>6} {'fits':>5} {'reused':>7} {'minutes':>8}  largest part"]
        for p in self.plans:
            cells = sum(v for k, v in p.counts.items() if k.endswith("cells"))
            reused = sum(v for k, v in p.reused.items() if k.endswith("cells"))
            parts = Counter()
            for unit, secs in self.costs.by_unit(p.work).items():
                parts[group(unit)] += secs
            what, most = parts.most_common(1)[0] if parts else ("", 0.0)
            share = f"{what} {most / max(seconds[p.name], 1e-9):.0%}" if what else ""
            rows.append(f"{p.name:<11} {cells:>6} {p.counts['generator fits']:>5} {reused:>7} "
                        f"{seconds[p.name] / 60:>8.1f}  {share}")
        total = self.total()
        low, high = total * (1 - UNCERTAINTY), total * (1 + UNCERTAINTY)
        rows.append(f"{'total':<11} {'':>6} {'':>5} {'':>7} {total / 60:>8.1f}  {_duration(total)} "
                    f"(±{UNCERTAINTY:.0%}: {_duration(low)} to {_duration(high)})")
        where = ", ".join(f"{what} {secs / max(total, 1e-9):.0%}" for what, secs in self.shares()[:4])
        head = (f"[estimate] {self.profile}: {'what is left of ' if self.resumed else ''}the run on "
                f"{self.costs.machine}; unit costs {self.costs.source}")
        return "\n".join([head, *rows, f"where the time goes: {where}"])


def estimate(profile: str, overrides: dict | None = None, notebooks=None, resume: bool = True,
             costs: Costs | None = None, records: bool = True) -> Estimate:
    """Count the work of `profile` (finished cells left out when `resume`) and price it with `costs` (default: a
    calibration now, on the device the profile's `device` resolves to; with `records`, the units this profile's
    finished cells on this machine time are taken from them: `record_costs`)."""
    params = parameters(profile, overrides, notebooks)
    plans = plan(params, profile=profile if resume else None)
    if costs is None:
        costs = calibrate(params, plans)
        if records:
            from .train import resolve_device
            used = set().union(*(p.work for p in plans))
            like = next((p for p in params.values() if hasattr(p, "steps_for")), next(iter(params.values())))
            recorded = {u: v for u, v in record_costs(None, resolve_device(like.device), like).items()
                        if u in used and v > 0}
            if recorded:          # cells this machine ran with the same classifier and generators: what they cost
                costs.seconds.update(recorded)
                costs.source += f"; {', '.join(sorted(recorded))} from records made here (results/*/)"
    return Estimate(profile, plans, costs, resume)


def busy_cpus(seconds: float = 0.5) -> float | None:
    """CPUs' worth of work other processes did over `seconds` (from /proc/stat, Linux; None elsewhere): taken
    before the calibration, which would otherwise time a shared machine."""
    def ticks():
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]            # total, idle + iowait
    try:
        total0, idle0 = ticks()
        time.sleep(seconds)
        total1, idle1 = ticks()
    except (OSError, ValueError, IndexError):
        return None
    import os
    cpus = os.cpu_count() or 1
    return cpus * (1 - (idle1 - idle0) / max(total1 - total0, 1))


def load_note(busy: float | None) -> str:
    """A warning when other processes kept the CPU busy as the calibration began (it then times a slower machine)."""
    from .train import cpu_threads
    if busy is None or busy < 0.25 * cpu_threads():
        return ""
    return (f"[estimate] note: other processes kept {busy:.1f} of {cpu_threads()} CPUs busy as the calibration "
            f"began: unit costs measured now run long unless the run shares the machine too")


def print_estimate(profile: str, overrides: dict | None = None, notebooks=None, executor: str = "inline",
                   strict: bool = False) -> Estimate | None:
    """What `make reproduce` prints before it starts. A failure to estimate never stops a run (unless `strict`)."""
    try:
        note = load_note(busy_cpus())
        result = estimate(profile, overrides, notebooks)
    except Exception as err:                      # noqa: BLE001 -- an estimate must not cost the run itself
        if strict:
            raise
        print(f"[estimate] no estimate ({type(err).__name__}: {err})", flush=True)
        return None
    print(result.table(), flush=True)
    if note:
        print(note, flush=True)
    if executor != "inline":
        print(f"[estimate] executor={executor}: this is the inline time; parallel jobs divide the cell time by "
              f"the jobs running at once, each job adds a process start", flush=True)
    return result


# ---------------------------------------------------------------- validation against a timed run
def measured_seconds(profile: str) -> dict:
    """{notebook: log line} of the first execution of each notebook in results/<profile>/reproduce.jsonl that
    computed every cell (what `plan` counts without `profile`; a line saying it reused some is skipped)."""
    import json

    from .runs import results_root
    path = results_root() / profile / "reproduce.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("cells_computed", 0) < entry.get("cells_total", 0):
            continue
        out.setdefault(entry["notebook"], entry)
    return out


def same_device(recorded, device) -> bool:
    """Whether a record's own device ("cpu", "cuda:0"; None where the record predates the field) is of `device`'s
    kind; any device when `device` is None."""
    return device is None or recorded is None or str(recorded).split(":")[0] == str(device).split(":")[0]


def record_costs(profile: str | None, device=None, like=None) -> dict:
    """Seconds per unit as the records of runs show them (results/<profile>/*/cells/; every profile's when
    `profile` is None), for the units a record times on its own: classifier training (`train_seconds` / images seen,
    real arm), evaluation (the rest of a real cell's seconds per scored view), sampling per family (a stream cell's
    training seconds per image beyond the real arm's; in batches of 500: a quality cell's rate), generator steps (the
    generators notebook's fits: training seconds per step) and contrastive pairs (latent-view encoders, less their
    decoding). Medians over cells; cells reused from another notebook are skipped. With `device`, only runs made on
    this machine count (environment.json: CPU model, device); with `like` (a notebook's parameters), only cells of
    the same dataset, classifier (model, batch, augmentation) and generator code (`generators.identity`)."""
    import json
    import statistics

    from . import generators
    from .runs import cpu_model, results_root
    found: dict = {}
    paths = []
    folders = [results_root() / profile] if profile else sorted(
        p for p in results_root().glob("*") if p.is_dir() and p.name not in ("cache", "bench"))
    for run in sorted(p for folder in folders for p in folder.glob("*") if (p / "cells").is_dir()):
        env = run / "environment.json"
        if device is not None:
            here = {"cpu_model": cpu_model(), "device": str(device)}
            there = json.loads(env.read_text()) if env.is_file() else {}
            if any(there.get(k) != v for k, v in here.items()):
                continue
        paths += sorted(run.glob("cells/*/record.json"))

    def same(key: dict, *fields) -> bool:
        if like is None:
            return True
        if key.get("dataset") != like.dataset or any(key.get(f) != getattr(like, f, None) for f in fields):
            return False
        name = key.get("generator")
        return not name or name in ("none", "memoriser") or not generators.is_generator(name) or \
            json.loads(json.dumps(generators.identity(name))) == key.get("gen_identity")
    for path in paths:
        record = json.loads(path.read_text())
        key, m = record["key"], record["metrics"]
        if "reused_from" in m:
            continue
        if key.get("arm") in ("real", "stream") and m.get("images_seen") and same(key, "model", "batch_size",
                                                                                     "augment"):
            per_image = m["train_seconds"] / m["images_seen"]
            found.setdefault(f"{key['arm']}:{key['generator']}", []).append(per_image)
            if key["arm"] == "real" and key.get("dataset") in DATASET_FACTS:
                views = (key["val_size"] + DATASET_FACTS[key["dataset"]][1]) * tta_views(key["tta"], key["augment"])
                found.setdefault("forward_image", []).append(
                    (record["seconds"] - m["train_seconds"] - CELL_SECONDS) / views)
        elif "quality_samples" in key and same(key) and "gen_config" not in key:
            # a zoo_overrides fit (gen_config) samples otherwise: not a unit cost. A run folder's records may come
            # from several machines (paper's generators: an H200's fits beside a CPU's), so a record that names its
            # own devices counts only where they are this one's kind
            if key["generator"] != "pca_gaussian" and same_device(m.get("fit_device"), device):
                found.setdefault(f"gen_step:{key['generator']}", []).append(m["train_seconds"] / key["gen_steps"])
            if m.get("samples_per_s") and same_device(m.get("sample_device"), device):   # 5,000 in batches of 500
                found.setdefault(f"quality:{key['generator']}", []).append(1 / m["samples_per_s"])
        elif key.get("source") == "synthetic" and key.get("views") == "latent" and m.get("train_seconds") and \
                same(key, "model"):
            found.setdefault(f"latent:{key['generator']}", []).append(
                m["train_seconds"] / (key["steps"] * key["batch_size"]))
    out = {unit: statistics.median(v) for unit, v in found.items() if ":" not in unit or unit.startswith("gen_step")}
    if "real:none" in found:
        real = out["train_image"] = statistics.median(found["real:none"])
        for unit, values in found.items():
            if unit.startswith("stream:"):
                out[f"sample:{unit.partition(':')[2]}"] = max(statistics.median(values) - real, 0.0)
    for unit, values in found.items():
        if unit.startswith("quality:"):
            out[f"sample500:{unit.partition(':')[2]}"] = statistics.median(values)
    # an encoder step per pair: a latent-view cell's seconds per pair less its two decodes (the family's sampling
    # cost, known from its stream cells)
    pairs = [statistics.median(v) - 2 * out[f"sample:{u.partition(':')[2]}"] for u, v in found.items()
             if u.startswith("latent:") and f"sample:{u.partition(':')[2]}" in out]
    if pairs:
        out["pair"] = max(min(pairs), 0.0)
    return out


def costs_table(calibrated: Costs, recorded: dict) -> str:
    """Unit costs measured now beside those the records show (their ratio: how well the calibration's short
    timings predict the run's)."""
    rows = [f"{'unit':<22} {'calibrated':>11} {'records':>11} {'ratio':>6}"]
    for unit in sorted(set(calibrated.seconds) & set(recorded)):
        a, b = calibrated.seconds[unit], recorded[unit]
        rows.append(f"{unit:<22} {a:>11.3g} {b:>11.3g} {a / b if b else float('nan'):>6.2f}")
    return "\n".join(rows)


def validation_table(result: Estimate, measured: dict) -> str:
    """Estimated vs measured minutes per notebook, and their ratio."""
    rows = [f"{'notebook':<11} {'estimated':>10} {'measured':>9} {'ratio':>6}  measured on"]
    est, done = result.seconds(), 0.0
    for name, secs in est.items():
        entry = measured.get(name)
        if entry is None:
            rows.append(f"{name:<11} {secs / 60:>10.1f} {'—':>9} {'':>6}")
            continue
        done += secs
        rows.append(f"{name:<11} {secs / 60:>10.1f} {entry['seconds'] / 60:>9.1f} {secs / entry['seconds']:>6.2f}  "
                    f"{entry.get('cpu_model', '?')}, {entry.get('threads', '?')} threads, git {entry.get('git', '?')}")
    total = sum(measured[n]["seconds"] for n in est if n in measured)
    if total:
        rows.append(f"{'total':<11} {done / 60:>10.1f} {total / 60:>9.1f} {done / total:>6.2f}  (notebooks measured)")
    return "\n".join(rows)


def main(argv=None) -> int:
    import sys
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick", help=f"one of {', '.join(config.profiles())}")
    parser.add_argument("--notebooks", nargs="*", default=None, help="a subset of the study's notebooks")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a parameter (VALUE read as YAML), as `synthstudy.reproduce -p` does")
    parser.add_argument("--first-run", action="store_true",
                        help="the time of a first run (every cell), not of what is left given the records on disk")
    parser.add_argument("--validate", action="store_true",
                        help="compare a first run's estimate with the notebook times in "
                             "results/<profile>/reproduce.jsonl ($SYNTHSTUDY_RESULTS picks another results folder)")
    args = parser.parse_args(argv)
    import yaml
    overrides = {k: yaml.safe_load(v) for k, v in args.parameter}
    note = load_note(busy_cpus())
    try:
        result = estimate(args.profile, overrides, args.notebooks, resume=not (args.first_run or args.validate),
                          records=not args.validate)
    except config.ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.table())
    if note:
        print(note)
    if args.validate:
        measured = measured_seconds(args.profile)
        if not measured:
            print(f"[estimate] no timed run of {args.profile} to validate against", file=sys.stderr)
            return 1
        print(validation_table(result, measured))
        print(costs_table(result.costs, record_costs(args.profile)))     # the timed run's machine: any
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
