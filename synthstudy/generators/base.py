"""The shared base of every class-conditional generator: the `Generator` interface, input checks, shape plans.

A generator is an `nn.Module`, so `state_dict()` / `load_state_dict()` work and `runs.cached` can `torch.save`
the whole fitted object. Subclasses build their networks in `_build()` and train them in `_fit()`; the base class
validates inputs, seeds and picks the device (`train.setup`, as the classifier and encoder loops do) and hands back
a CPU model, so every family behaves the same way; the families log their losses with `train.LossLog`:

    >>> gen = generators.create("cvae", image_shape=(1, 28, 28), num_classes=10)
    >>> history = gen.fit(train, steps=2000, seed=0)           # same seed + same data -> same weights on CPU
    >>> x = gen.sample(torch.arange(10))                       # float (10, 1, 28, 28) in [0, 1], on CPU
    >>> z = gen.sample_latents(labels, rng); x = gen.decode(z + 0.1 * torch.randn_like(z), labels)   # a "view"

`fit` starts from scratch every time: it reseeds and rebuilds the networks, so the result depends only on the
data, the config, `steps` and `seed`. A family with `resumable = True` (the flow and the cGAN: their long fits
take hours on 2 cores) also takes a `checkpoint` path: it snapshots the fit there every `checkpoint_every`
seconds (atomic writes), and a fit started again with the same path and inputs continues from the last snapshot;
on a CPU with the same thread count the resumed fit ends bit-identical to one never stopped
(tests/test_generators.py).
`generators.fit_cached` keeps the snapshot beside the cache entry and deletes it once the fitted model is saved.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from torch import nn

from .. import runs
from ..data import ImageSet
from ..train import check_positive, setup

# Square image sizes the convolutional families support, as (start size, number of 2x up/downsamplings):
# the decoder starts from a start x start map and doubles it; the encoder / discriminator halves back to it.
SIZE_PLANS = {8: (4, 1), 16: (4, 2), 28: (7, 2), 32: (4, 3)}


def size_plan(image_shape: tuple) -> tuple[int, int]:
    """(start size, number of doublings) for an image shape, or a ValueError naming the supported sizes."""
    _, h, w = image_shape
    if h != w or h not in SIZE_PLANS:
        sizes = ", ".join(f"{s}x{s}" for s in SIZE_PLANS)
        raise ValueError(f"image_shape={tuple(image_shape)!r}: height x width {h}x{w} is not supported by this "
                         f"generator; allowed sizes: {sizes}")
    return SIZE_PLANS[h]


def check_image_shape(image_shape) -> tuple[int, int, int]:
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list, torch.Size)) else None
    if (shape is None or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)):
        raise ValueError(f"image_shape={image_shape!r} must be three positive integers (C, H, W)")
    return shape


def check_number(name: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False):
    """A float in [low, high] (or open at either end); a ValueError naming the parameter otherwise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name}={value!r} must be a number in {lo}{low}, {high}{hi}")
    return float(value)


class FitCheckpoint:
    """Snapshots of one fit in progress at `path` (None: none are taken), at most every `every_seconds`.

    `state` is the snapshot found at start (None for a fresh fit). The family's loop calls `save(**its state)` when
    `due()`; the base class adds the model's weights, the states of the loop's `rng` and torch's global CPU RNG
    (not CUDA's: no resumable family draws from it), the fit's `identity` (family, weights config, budget, seed,
    data hash: a snapshot of another fit is refused, not silently continued), the seconds spent so far, and the
    device and CPU thread count it ran on. A resumed fit is bit-identical to an uninterrupted one on the same
    device and thread count (on a CPU; 1 and 2 threads already give different fits), close to it otherwise."""

    def __init__(self, path, every_seconds: float, identity: dict):
        self.path = None if path is None else Path(path)
        self.every_seconds, self.identity = every_seconds, identity
        self.state = None
        if self.path is not None and self.path.is_file():
            state = torch.load(self.path, weights_only=False, map_location="cpu")
            if state.get("identity") != identity:
                raise ValueError(f"checkpoint {self.path} holds a fit of {state.get('identity')}, not of {identity}; "
                                 f"delete it to start this fit from scratch")
            self.state = state
        self.started = time.perf_counter()      # `fit` sets it where training starts, less a snapshot's seconds
        self._last = time.monotonic()
        self.model: nn.Module | None = None
        self.rng: torch.Generator | None = None
        self.device = "cpu"

    def due(self) -> bool:
        return self.path is not None and time.monotonic() - self._last >= self.every_seconds

    def save(self, **state) -> None:
        runs.save_torch(self.path, {"identity": self.identity, "model": self.model.state_dict(),
                                    "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(),
                                    "seconds": time.perf_counter() - self.started, "device": self.device,
                                    "threads": torch.get_num_threads(), **state})
        self._last = time.monotonic()


def images_to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images -> float32 in [0, 1] (on the images' device)."""
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


class Generator(nn.Module):
    """Base class: a class-conditional image generator with a latent interface.

    Subclasses set `family` and `latent_dim`, and implement `_build()`, `_fit(...)`, `sample_latents` and
    `_decode`. `config` keeps the constructor's keyword arguments (what `create` was given, plus defaults).
    """

    family = "generator"
    default_batch_size = 64
    resumable = False           # True where `_fit` snapshots through `self.checkpoint` (see FitCheckpoint)
    # config keys that change only how a fitted model samples (not its weights): the model cache leaves them out of
    # its key and sets them on the loaded model, so trying another sampler does not retrain
    sampling_options: tuple[str, ...] = ()

    @classmethod
    def key_options(cls, config: dict) -> dict:
        """The part of `config` that the model cache's key and the cells' `identity` hold. A family whose options
        came after results were recorded leaves them out while they are off (see FlowMatching), so adding them does
        not orphan every cached model and recorded cell."""
        return dict(config)

    def __init__(self, image_shape, num_classes: int, config: dict):
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        check_positive("num_classes", num_classes)
        self.num_classes = num_classes
        self.config = dict(config)
        self.history: dict = {}
        self.latent_dim = 0

    # ---------------------------------------------------------------- to implement
    def _build(self) -> None:
        """(Re)create every network and buffer from the global RNG (the base class seeds it first)."""
        raise NotImplementedError

    def _fit(self, train: ImageSet, steps: int, batch_size: int, device: torch.device, rng: torch.Generator,
             progress: bool) -> dict:
        """Train on `train` (already on `device`), drawing batches and noise from `rng`; return the history dict
        (`losses`: a `train.LossLog` curve)."""
        raise NotImplementedError

    def sample_latents(self, labels: torch.Tensor, rng: torch.Generator | None = None) -> torch.Tensor:
        """Latents (B, latent_dim), float32 on CPU, drawn from the prior the decoder expects."""
        raise NotImplementedError

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z and labels on the module's device -> images (B, C, H, W), roughly in [0, 1]."""
        raise NotImplementedError

    def sampling_state_dict(self) -> dict:
        """Only the tensors `sample` needs (what a shipped generator would store); see `parameter_bytes`."""
        return self.state_dict()

    # ---------------------------------------------------------------- shared behaviour
    @property
    def device(self) -> torch.device:
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")

    def check_labels(self, labels) -> torch.Tensor:
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or labels.dtype in (torch.float16, torch.float32, torch.float64, torch.bool):
            raise ValueError(f"labels must be a 1-D integer tensor, got {labels.dtype} {tuple(labels.shape)}")
        labels = labels.long().cpu()
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in 0..{self.num_classes - 1} (num_classes={self.num_classes}), "
                             f"got values in {int(labels.min())}..{int(labels.max())}")
        return labels

    def fit(self, train: ImageSet, steps: int, seed: int, device: str = "auto", progress: bool = True,
            batch_size: int | None = None, threads: int = 0, checkpoint=None,
            checkpoint_every: float = 300.0) -> dict:
        """Fit from scratch on `train` for a fixed budget of `steps` optimizer steps; returns the history.

        `batch_size=None` uses the family's configured batch size. On CPU, torch uses `threads` threads
        (0 = every core this process may use, as `train.fit` does). The fitted model is moved back to the CPU.
        `checkpoint` (a resumable family only): snapshot the fit to this path every `checkpoint_every` seconds, and
        continue from a snapshot found there (history["resumed_at"] then names where); the caller deletes it.
        """
        check_positive("steps", steps)
        batch_size = self.config.get("batch_size", self.default_batch_size) if batch_size is None else batch_size
        check_positive("batch_size", batch_size)
        if checkpoint is not None and not self.resumable:
            raise ValueError(f"checkpoint={str(checkpoint)!r}: the {self.family} family's fit cannot resume; "
                             f"allowed: None")
        check_number("checkpoint_every", checkpoint_every, 0, math.inf, low_open=True)
        self._check_train(train)
        identity = None
        if checkpoint is not None:
            # the package's cache hash, imported here: the package imports this module
            from . import data_fingerprint
            identity = {"family": self.family, "steps": steps, "seed": seed, "batch_size": batch_size,
                        "config": {k: v for k, v in self.config.items() if k not in self.sampling_options},
                        "image_shape": list(self.image_shape), "num_classes": self.num_classes,
                        "data_sha": data_fingerprint(train)}
        self.checkpoint = ck = FitCheckpoint(checkpoint, checkpoint_every, identity)      # reads a snapshot first
        try:
            # Seed, then rebuild: the initial weights come from `seed` too, not from whatever ran before `fit`.
            dev, rng = setup(seed, device, threads)
            self._build()
            state = ck.state
            if state is not None:                   # continue: the snapshot's weights and random streams
                self.load_state_dict(state["model"])
                rng.set_state(state["rng"])
                torch.set_rng_state(state["torch_rng"])
            ck.model, ck.rng, ck.device = self, rng, str(dev)
            self.to(dev)
            ck.started = time.perf_counter() - (state["seconds"] if state is not None else 0.0)
            history = self._fit(ImageSet(train.images.to(dev), train.labels.to(dev)), steps, batch_size, dev, rng,
                                progress)
        finally:
            del self.checkpoint                     # never pickled with the model
        history.update(seconds=time.perf_counter() - ck.started, steps=steps,
                       batch_size=batch_size, seed=seed, device=str(dev), n_train=len(train))
        if state is not None:                       # where the fit continued from, and on what it had run
            threads_text = f"{state['threads']} CPU thread{'s' if state['threads'] != 1 else ''}"
            history["resumed_at"] = (f"{state['stage']} step {state['step']}, snapshot taken on {state['device']} "
                                     f"with {threads_text}")
        self.to("cpu")
        self.history = history
        return history

    def _check_train(self, train: ImageSet) -> None:
        if not isinstance(train, ImageSet):
            raise ValueError(f"train must be a data.ImageSet, got {type(train).__name__}")
        if tuple(train.images.shape[1:]) != self.image_shape:
            raise ValueError(f"train images have shape {tuple(train.images.shape[1:])} but the generator was "
                             f"created with image_shape={self.image_shape}")
        labels = train.labels
        if len(labels) == 0:
            raise ValueError("train is empty; a generator needs at least one image per class")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"train labels must be in 0..{self.num_classes - 1} (num_classes={self.num_classes})")
        missing = sorted(set(range(self.num_classes)) - set(torch.unique(labels).tolist()))
        if missing:
            raise ValueError(f"train has no images of class(es) {missing}; a class-conditional generator needs "
                             f"at least one image of every class 0..{self.num_classes - 1}")

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels) -> torch.Tensor:
        """Latents + labels -> float images (B, C, H, W) in [0, 1] on CPU (runs on the module's device)."""
        labels = self.check_labels(labels)
        if z.ndim != 2 or z.shape != (len(labels), self.latent_dim):
            raise ValueError(f"z must have shape (len(labels), latent_dim) = ({len(labels)}, {self.latent_dim}), "
                             f"got {tuple(z.shape)}")
        dev = self.device
        x = self._decode(z.to(dev, torch.float32), labels.to(dev))
        return x.float().clamp_(0, 1).cpu()

    def sample(self, labels, rng: torch.Generator | None = None) -> torch.Tensor:
        """Fresh images of the given classes: `decode(sample_latents(labels, rng), labels)`."""
        labels = self.check_labels(labels)
        return self.decode(self.sample_latents(labels, rng), labels)

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, num_classes={self.num_classes}, config={self.config}"
