"""Class-conditional generators that stand in for the real training set: a registry, a cache, a storage count.

    >>> from synthstudy import generators
    >>> generators.available()
    ['cgan', 'cvae', 'flow', 'pca_gaussian']
    >>> gen = generators.create("cgan", image_shape=(1, 28, 28), num_classes=10, width=32)
    >>> history = gen.fit(train, steps=5000, seed=0)                 # train: data.ImageSet
    >>> x = gen.sample(labels, rng=torch.Generator().manual_seed(0))   # float (B, C, H, W) in [0, 1], CPU

    # the same, trained once and then loaded from results/cache/generators/<hash>/ on every rerun
    >>> gen = generators.fit_cached("cgan", train, data_key={"dataset": "fashion_mnist", "n": 1000, "subset_seed": 0},
    ...                             config={"width": 32}, steps=5000, seed=0)

Families (one module each):
- `pca_gaussian`: per-class Gaussian in PCA space; fits in seconds, no gradient steps.
- `cvae`: conditional VAE, conv encoder / decoder.
- `cgan`: DCGAN-style conditional GAN (hinge loss, spectral norm, projection D, DiffAugment, EMA, truncation).
- `flow`: latent flow matching (autoencoder + rectified-flow MLP), deterministic ODE sampler, classifier-free
  guidance; its latent code is the ODE's starting noise.

Pretrained families (`available(pretrained=True)`; `pretrained.py`), loaded not trained, ImageNet classes mapped
onto the study's class names: `biggan-deep-128|256|512` (pytorch-pretrained-biggan, GenRep's generator) and
`dit-xl-2-256|512` (diffusers). Weights come from `pretrained_path` or, with `allow_download=True`, the internet;
`fit_cached` / `fit_on_subset` return them loaded (nothing to fit, nothing cached).

Every generator has the latent interface used for "views": `z = gen.sample_latents(labels, rng)`,
`gen.decode(z, labels)`; `gen.sample(...)` is the two in a row, and nearby latents decode to similar images.
`parameter_bytes(gen)` is the storage a generator needs to sample (for the storage table).
"""
from __future__ import annotations

import hashlib
import inspect

import numpy as np
import torch

from .. import runs
from ..data import ImageSet, stratified_indices
from .base import SIZE_PLANS, Generator, check_image_shape
from .cgan import CGAN
from .cvae import CVAE
from .flow import FlowMatching
from .pca_gaussian import PCAGaussian
from .pretrained import PRETRAINED, PretrainedGenerator

# Bump a family's version when its training code changes in a way that changes results: the cache key holds it,
# so old cached models are not reused by mistake.
_REGISTRY: dict[str, tuple[type[Generator], int]] = {
    "pca_gaussian": (PCAGaussian, 1),
    "cvae": (CVAE, 1),
    "cgan": (CGAN, 2),   # 2: PyTorch spectral_norm instead of a hand-written one
    "flow": (FlowMatching, 1),
    # pretrained families: the version is the adapter's (sampling, class mapping), the weights are fixed
    **{name: (cls, 1) for name, cls in PRETRAINED.items()},
}

__all__ = ["Generator", "SIZE_PLANS", "available", "config_options", "create", "fit_cached", "fit_on_subset",
           "is_pretrained", "parameter_bytes", "sample_pool", "study_config",
           "CGAN", "CVAE", "FlowMatching", "PCAGaussian", "PretrainedGenerator"]


def available(pretrained: bool = False) -> list[str]:
    """Registered generator names: the families this study trains, plus the pretrained ones if `pretrained`."""
    return sorted(n for n in _REGISTRY if pretrained or n not in PRETRAINED)


def is_generator(name: str, pretrained: bool = True) -> bool:
    """True for a registered generator family (the pretrained adapters too, unless `pretrained` is False)."""
    return name in available(pretrained=pretrained)


def is_pretrained(name: str) -> bool:
    """True for a family that is loaded with pretrained weights instead of trained here."""
    return name in PRETRAINED


def _check_name(name: str) -> type[Generator]:
    if name not in _REGISTRY:
        raise ValueError(f"generator={name!r} is unknown; allowed values: {', '.join(available())}; "
                         f"pretrained: {', '.join(PRETRAINED)}")
    return _REGISTRY[name][0]


def config_options(name: str) -> dict:
    """The configuration keys a family accepts, with their defaults."""
    params = inspect.signature(_check_name(name).__init__).parameters
    return {k: p.default for k, p in params.items() if k not in ("self", "image_shape", "num_classes")}


def identity(name: str) -> dict:
    """What a grid cell's key must hold about a family besides its step budget and seed: its code version and
    default hyperparameters. A cell that used a family's default model is then rerun when either changes (the
    model cache sees the change through `fit_cached`'s key; the cells that scored the old model must see it too)."""
    import inspect
    cls = _check_name(name)
    defaults = cls.key_options({k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                                if p.default is not inspect.Parameter.empty})
    return {"version": _REGISTRY[name][1], "defaults": defaults}


def cell_key(name: str, steps: int, seed: int) -> dict:
    """What a grid cell's key holds about the generator it used (every notebook builds its keys with this): the step
    budget, the training seed and `identity` (code version + defaults), so a cell reruns exactly when its model
    would be retrained."""
    return {"gen_steps": steps, "gen_seed": seed, "gen_identity": identity(name)}


def create(name: str, image_shape, num_classes: int, **config) -> Generator:
    """Build an unfitted generator; unknown names, shapes, keys or values raise a ValueError naming them."""
    cls = _check_name(name)
    image_shape = check_image_shape(image_shape)
    allowed = config_options(name)
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"generator={name!r} has no config key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed keys: {', '.join(allowed)}")
    return cls(image_shape, num_classes, **config)


def data_fingerprint(train: ImageSet) -> str:
    """A content hash of the images and labels: guards the cache against a data_key that no longer matches."""
    h = hashlib.sha256()
    h.update(str(tuple(train.images.shape)).encode())
    h.update(train.images.contiguous().cpu().numpy().tobytes())
    h.update(train.labels.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def fit_cached(name: str, train: ImageSet, data_key: dict, config: dict, steps: int, seed: int,
               device: str = "auto", progress: bool = True, num_classes: int | None = None,
               threads: int = 0) -> Generator:
    """`create(name, ...).fit(train, steps, seed)`, done once: later calls with the same inputs load the result.

    The cache key holds the name, the family's code version, `data_key` (say dataset, N and subset seed: what a
    reader needs to know), a content hash of `train`, the full config (defaults filled in, so adding an explicit
    default does not retrain) less the family's `sampling_options` (set on the returned model instead: a new
    sampler does not retrain), image shape, number of classes, `steps` and `seed`. Device and threads are not
    part of it (they change speed, and on a GPU the last bits of the weights). `num_classes=None` takes
    max(label) + 1.

    A pretrained family (`is_pretrained`) is only loaded (config: its `classes`, weights source and consents; see
    `study_config`): nothing is fitted, nothing is cached, `steps` and `seed` are ignored.
    """
    cls = _check_name(name)
    if is_pretrained(name):
        return _load_pretrained(name, train, config, device, num_classes)
    if num_classes is None:
        num_classes = int(train.labels.max()) + 1
    image_shape = tuple(train.images.shape[1:])
    gen = create(name, image_shape, num_classes, **config)   # validates everything before any compute
    weights_config = cls.key_options({k: v for k, v in gen.config.items() if k not in cls.sampling_options})
    key = {"name": name, "version": _REGISTRY[name][1], "data": dict(data_key), "data_sha": data_fingerprint(train),
           "config": weights_config, "image_shape": list(image_shape), "num_classes": num_classes,
           "steps": steps, "seed": seed}

    def build(checkpoint=None) -> Generator:
        gen.fit(train, steps=steps, seed=seed, device=device, progress=progress, threads=threads,
                checkpoint=checkpoint)
        return gen

    result = runs.cached("generators", key, build, resumable=cls.resumable)
    if not isinstance(result, cls):
        raise TypeError(f"the cache entry for {key} holds a {type(result).__name__}, not a {cls.__name__}")
    result.config.update({k: gen.config[k] for k in cls.sampling_options})   # this call's sampler settings
    return result


def _load_pretrained(name: str, train: ImageSet, config: dict, device: str, num_classes: int | None) -> Generator:
    """A pretrained family for `train`'s image shape: loaded, never fitted and never cached here (its weights are
    fixed; a copy in results/cache would only duplicate gigabytes the library keeps in its own cache)."""
    config = {"device": device, **config}
    if num_classes is None:
        classes = config.get("classes")
        num_classes = len(classes) if classes is not None else int(train.labels.max()) + 1
    return create(name, tuple(train.images.shape[1:]), num_classes, **config)


def study_config(name: str, params, classes) -> dict:
    """The `config` a notebook passes to `fit_on_subset` for generator `name`: {} for the trained families (their
    defaults), and for a pretrained one its class names and the notebook's consent and weights parameters."""
    if not is_pretrained(name):
        return {}
    return {"classes": list(classes), "allow_download": bool(params.allow_download),
            "pretrained_path": getattr(params, "pretrained_path", "") or None,
            "allow_cpu_pretrained": bool(getattr(params, "allow_cpu_pretrained", False))}


def study_generator_names(params) -> list[str]:
    """Every generator name a notebook's parameters refer to (whichever of the shared fields its schema has)."""
    names = []
    for field in ("generator", "generator_names", "scaling_generators"):
        value = getattr(params, field, None) if not isinstance(params, dict) else params.get(field)
        names += [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else []
    return [n for n in dict.fromkeys(names) if isinstance(n, str)]


def check_study_params(params) -> None:
    """Refuse, before any compute, a notebook's pretrained generators that cannot run as asked (unknown class
    counterparts, no weights source, offline download, CPU without consent); `config.py` calls this."""
    from . import pretrained
    names = [n for n in study_generator_names(params) if is_pretrained(n)]
    if not names:
        return
    from ..data import DataNotFoundError, class_names
    try:
        classes = class_names(params.dataset, getattr(params, "data_root", "") or None)
    except DataNotFoundError as err:
        raise ValueError(str(err)) from None        # a parameter error (no image folder), reported as such
    for name in names:
        pretrained.check_ready(name, classes=classes, allow_download=params.allow_download,
                               pretrained_path=getattr(params, "pretrained_path", "") or None, device=params.device,
                               allow_cpu_pretrained=getattr(params, "allow_cpu_pretrained", False))


def fill_pretrained_steps(values):
    """Notebook parameters with `gen_steps[name] = 1` added for each pretrained generator they name and
    `gen_steps` lacks: nothing is trained, but notebooks look every generator's budget up (cell keys hold it)."""
    if not isinstance(values, dict) or not isinstance(values.get("gen_steps"), dict):
        return values
    missing = [n for n in study_generator_names(values) if is_pretrained(n) and n not in values["gen_steps"]]
    if not missing:
        return values
    return {**values, "gen_steps": {**values["gen_steps"], **{n: 1 for n in missing}}}


def fit_on_subset(name: str, pool: ImageSet, dataset: str, n, subset_seed: int, steps: int, seed: int,
                  config: dict | None = None, device: str = "auto", progress: bool = True,
                  num_classes: int | None = None) -> tuple[Generator, np.ndarray]:
    """The generator every notebook shares: fit (or load) `name` on a stratified subset of `pool` of size `n`.

    `pool` is the train split minus the validation holdout (`data.holdout(splits.train, val_size, seed=0)[0]`);
    `n` is an int or "all" (the whole pool). Notebooks that call this with the same arguments share one cached
    model, so the generators notebook trains it and scaling / multiview / audits reuse it. Returns the fitted
    generator and the subset's indices into `pool` (save them with the run). A pretrained family comes back loaded,
    mapped onto `dataset`'s class names unless `config` gives `classes`.
    """
    if n == "all":
        indices = np.arange(len(pool))
    else:
        indices = stratified_indices(pool.labels.numpy(), int(n), seed=subset_seed)
    data_key = {"dataset": dataset, "n": n if n == "all" else int(n), "subset_seed": subset_seed,
                "pool_size": len(pool)}
    if is_pretrained(name) and "classes" not in (config or {}):
        from ..data import class_names
        # the dataset's class names (an image folder's come from $SYNTHSTUDY_IMAGEFOLDER; see study_config)
        config = {**(config or {}), "classes": list(class_names(dataset))}
    gen = fit_cached(name, pool.take(indices), data_key=data_key, config=config or {}, steps=steps, seed=seed,
                     device=device, progress=progress, num_classes=num_classes)
    return gen, indices


def sample_pool(generator: Generator, m: int, seed: int, batch_size: int = 500, progress: bool = False) -> ImageSet:
    """M synthetic images with balanced labels as a uint8 ImageSet (what a fixed synthetic "dataset" is).

    Stored as uint8, like the real data, so a pool costs what a real dataset of the same size costs and the
    classifier sees the same quantisation in both arms. Same (generator, m, seed) -> same pool.
    """
    from ..progress import tqdm
    from ..sources import balanced_labels
    if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m <= 0:
        raise ValueError(f"pool size m={m!r} must be a positive integer")
    rng = torch.Generator().manual_seed(seed)
    labels = balanced_labels(int(m), generator.num_classes, rng)
    chunks = []
    for i in tqdm(range(0, len(labels), batch_size), disable=not progress, desc="sample pool", leave=False):
        x = generator.sample(labels[i:i + batch_size], rng=rng)
        chunks.append(x.mul(255).round_().to(torch.uint8))
    return ImageSet(torch.cat(chunks), labels)


def parameter_bytes(generator: Generator) -> int:
    """Bytes of the tensors the generator needs to sample (e.g. the EMA generator of a GAN, not its
    discriminator), as stored: the number a storage comparison against the real dataset should use."""
    return sum(t.numel() * t.element_size() for t in generator.sampling_state_dict().values())
