"""Batch sources: everything that feeds the training loop yields (images, labels) batches through one interface.

A source has `next_batch(batch_size, generator) -> (images, labels)` where images are uint8 in [0, 255] or float
in [0, 1], shape (B, C, H, W). The real arm is `ImageSetSource`; the generator arms (pools, online streams, mixes,
latent views) implement the same method, so `train.fit` never knows which arm it is training.
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

    def next_batch(self, batch_size: int, generator: torch.Generator):
        while len(self._queue) < batch_size:
            self._queue = torch.cat([self._queue, torch.randperm(len(self.images), generator=generator)])
        idx, self._queue = self._queue[:batch_size], self._queue[batch_size:]
        return self.images.images[idx], self.images.labels[idx]
