"""Batch sources: everything that feeds the training loop yields (images, labels) batches through one interface.

A source has `next_batch(batch_size, rng) -> (images, labels)` where images are uint8 in [0, 255] or float
in [0, 1], shape (B, C, H, W), and `rng` is the training loop's seeded `torch.Generator`. The real arm is
`ImageSetSource`; the generator arms (pools, online streams, mixes, latent views) implement the same method, so
`train.fit` never knows which arm it is training.
"""
from __future__ import annotations

import torch

from .data import ImageSet


class ImageSetSource:
    """Samples a fixed set of images epoch by epoch (without replacement inside an epoch), seeded by the caller.

    Works for any set size, also smaller than a batch: epochs are concatenated until the batch is full.
    """

    def __init__(self, images: ImageSet):
        if len(images) == 0:
            raise ValueError("ImageSetSource needs at least one image")
        self.images = images
        self._queue = torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.images)

    def next_batch(self, batch_size: int, rng: torch.Generator):
        while len(self._queue) < batch_size:
            self._queue = torch.cat([self._queue, torch.randperm(len(self.images), generator=rng)])
        idx, self._queue = self._queue[:batch_size], self._queue[batch_size:]
        return self.images.images[idx], self.images.labels[idx]


class GeneratorStream:
    """Fresh synthetic images every batch (the "unlimited data" arm).

    Labels are balanced over classes by default: each batch holds every class equally often (remainder classes
    drawn by the caller's `rng`). `class_probs` instead draws labels i.i.d. from those weights, e.g. an
    imbalanced training set's class frequencies for the like-for-like arm of the bias audit. Labels and latents
    come from the caller's seeded `rng`, so a training run on a stream is reproducible on CPU. Images are
    float in [0, 1], produced on the generator's device and returned on CPU.
    """

    def __init__(self, generator_model, num_classes: int | None = None, class_probs=None):
        self.model = generator_model
        self.num_classes = num_classes or generator_model.num_classes
        self.probs = None
        if class_probs is not None:
            probs = torch.as_tensor(class_probs, dtype=torch.float64)
            if probs.ndim != 1 or len(probs) != self.num_classes or (probs < 0).any() or probs.sum() <= 0:
                raise ValueError(f"class_probs must be {self.num_classes} non-negative weights with a positive sum "
                                 f"(one per class), got {probs.tolist()}")
            self.probs = probs / probs.sum()

    def next_batch(self, batch_size: int, rng: torch.Generator):
        if self.probs is None:
            labels = balanced_labels(batch_size, self.num_classes, rng)
        else:
            labels = torch.multinomial(self.probs, batch_size, replacement=True, generator=rng)
        return self.model.sample(labels, rng=rng), labels


def balanced_labels(count: int, num_classes: int, rng: torch.Generator) -> torch.Tensor:
    """`count` labels, every class count // num_classes times plus a random remainder, in random order."""
    base = torch.arange(num_classes).repeat(count // num_classes)
    extra = torch.randperm(num_classes, generator=rng)[: count - len(base)]
    labels = torch.cat([base, extra])
    return labels[torch.randperm(len(labels), generator=rng)]


class MixSource:
    """Real and synthetic images in one batch; `synthetic_fraction` is the synthetic share of the batch.

    Two variants, because they answer different questions:
    - `replace=False` (the study's "mix" arm): every batch holds the real arm's *whole* real batch plus
      `extra_synthetic(batch_size, synthetic_fraction)` synthetic images, so the classifier sees exactly as many
      real images as the real arm; a difference is then what the synthetic images add (or cost), not fewer looks
      at real data.
    - `replace=True` ("mix-replace"): synthetic images take the place of `round(fraction * batch_size)` real ones
      in a batch of the same size; 0 gives the real arm, 1 the stream arm.
    Both parts are converted to float [0, 1] so they concatenate.
    """

    def __init__(self, real, synthetic, synthetic_fraction: float, replace: bool = False):
        upper_ok = synthetic_fraction <= 1.0 if replace else synthetic_fraction < 1.0
        if not (0.0 <= synthetic_fraction and upper_ok):
            allowed = "[0, 1]" if replace else "[0, 1) (an added share of 1 would need infinitely many images)"
            raise ValueError(f"synthetic_fraction={synthetic_fraction!r} must be in {allowed}")
        self.real, self.synthetic, self.fraction = real, synthetic, float(synthetic_fraction)
        self.replace = bool(replace)

    def next_batch(self, batch_size: int, rng: torch.Generator):
        if self.replace:
            n_syn = int(round(self.fraction * batch_size))
            n_real = batch_size - n_syn
        else:
            n_real, n_syn = batch_size, extra_synthetic(batch_size, self.fraction)
        parts = []
        if n_real:
            parts.append(self.real.next_batch(n_real, rng))
        if n_syn:
            parts.append(self.synthetic.next_batch(n_syn, rng))
        images = torch.cat([to_unit(x) for x, _ in parts])
        labels = torch.cat([y for _, y in parts])
        return images, labels


def extra_synthetic(real_batch: int, synthetic_fraction: float) -> int:
    """Synthetic images added to a real batch so that they are `synthetic_fraction` of the combined batch."""
    return int(round(real_batch * synthetic_fraction / (1.0 - synthetic_fraction)))


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float [0, 1]."""
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()
