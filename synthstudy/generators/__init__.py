"""Class-conditional generators that stand in for the real training set: a registry, a cache, a storage count.

    >>> from synthstudy import generators
    >>> generators.available()
    ['cgan', 'cvae', 'flow', 'pca_gaussian']
    >>> gen = generators.create("cgan", image_shape=(1, 28, 28), num_classes=10, width=32)
    >>> history = gen.fit(train, steps=5000, seed=0)                 # train: data.ImageSet
    >>> x = gen.sample(labels, generator=torch.Generator().manual_seed(0))   # float (B, C, H, W) in [0, 1], CPU

    # the same, trained once and then loaded from results/cache/generators/<hash>/ on every rerun
    >>> gen = generators.fit_cached("cgan", train, data_key={"dataset": "fashion_mnist", "n": 1000, "subset_seed": 0},
    ...                             config={"width": 32}, steps=5000, seed=0)

Families (one module each):
- `pca_gaussian`: per-class Gaussian in PCA space; fits in seconds, no gradient steps.
- `cvae`: conditional VAE, conv encoder / decoder.
- `cgan`: DCGAN-style conditional GAN (hinge loss, spectral norm, projection D, DiffAugment, EMA, truncation).
- `flow`: latent flow matching (autoencoder + rectified-flow MLP), deterministic ODE sampler, classifier-free
  guidance; its latent code is the ODE's starting noise.

Every generator has the latent interface used for "views": `z = gen.sample_latents(labels, g)`,
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

# Bump a family's version when its training code changes in a way that changes results: the cache key holds it,
# so old cached models are not reused by mistake.
_REGISTRY: dict[str, tuple[type[Generator], int]] = {
    "pca_gaussian": (PCAGaussian, 1),
    "cvae": (CVAE, 1),
    "cgan": (CGAN, 2),   # 2: PyTorch spectral_norm instead of a hand-written one
    "flow": (FlowMatching, 1),
}

__all__ = ["Generator", "SIZE_PLANS", "available", "config_options", "create", "fit_cached", "fit_on_subset",
           "parameter_bytes", "sample_pool",
           "CGAN", "CVAE", "FlowMatching", "PCAGaussian"]


def available() -> list[str]:
    """Registered generator names."""
    return sorted(_REGISTRY)


def _check_name(name: str) -> type[Generator]:
    if name not in _REGISTRY:
        raise ValueError(f"generator={name!r} is unknown; allowed values: {', '.join(available())}")
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
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
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
    default does not retrain), image shape, number of classes, `steps` and `seed`. Device and threads are not
    part of it (they change speed, and on a GPU the last bits of the weights). `num_classes=None` takes
    max(label) + 1.
    """
    cls = _check_name(name)
    if num_classes is None:
        num_classes = int(train.labels.max()) + 1
    image_shape = tuple(train.images.shape[1:])
    gen = create(name, image_shape, num_classes, **config)   # validates everything before any compute
    key = {"name": name, "version": _REGISTRY[name][1], "data": dict(data_key), "data_sha": data_fingerprint(train),
           "config": gen.config, "image_shape": list(image_shape), "num_classes": num_classes,
           "steps": steps, "seed": seed}

    def build() -> Generator:
        gen.fit(train, steps=steps, seed=seed, device=device, progress=progress, threads=threads)
        return gen

    result = runs.cached("generators", key, build)
    if not isinstance(result, cls):
        raise TypeError(f"the cache entry for {key} holds a {type(result).__name__}, not a {cls.__name__}")
    return result


def fit_on_subset(name: str, pool: ImageSet, dataset: str, n, subset_seed: int, steps: int, seed: int,
                  config: dict | None = None, device: str = "auto", progress: bool = True,
                  num_classes: int | None = None) -> tuple[Generator, np.ndarray]:
    """The generator every notebook shares: fit (or load) `name` on a stratified subset of `pool` of size `n`.

    `pool` is the train split minus the validation holdout (`data.holdout(splits.train, val_size, seed=0)[0]`);
    `n` is an int or "all" (the whole pool). Notebooks that call this with the same arguments share one cached
    model, so the generators notebook trains it and scaling / multiview / audits reuse it. Returns the fitted
    generator and the subset's indices into `pool` (save them with the run).
    """
    if n == "all":
        indices = np.arange(len(pool))
    else:
        indices = stratified_indices(pool.labels.numpy(), int(n), seed=subset_seed)
    data_key = {"dataset": dataset, "n": n if n == "all" else int(n), "subset_seed": subset_seed,
                "pool_size": len(pool)}
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
    g = torch.Generator().manual_seed(seed)
    labels = balanced_labels(int(m), generator.num_classes, g)
    chunks = []
    for i in tqdm(range(0, len(labels), batch_size), disable=not progress, desc="sample pool", leave=False):
        x = generator.sample(labels[i:i + batch_size], generator=g)
        chunks.append(x.mul(255).round_().to(torch.uint8))
    return ImageSet(torch.cat(chunks), labels)


def parameter_bytes(generator: Generator) -> int:
    """Bytes of the tensors the generator needs to sample (e.g. the EMA generator of a GAN, not its
    discriminator), as stored: the number a storage comparison against the real dataset should use."""
    return sum(t.numel() * t.element_size() for t in generator.sampling_state_dict().values())
