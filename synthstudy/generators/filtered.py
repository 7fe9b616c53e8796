"""Classifier-filtered sampling: keep only the samples a classifier trained on the real pool reads as their class.

GaFi (Lampis, Lomurno & Matteucci 2023, "Bridging the gap: enhancing the utility of synthetic data via
post-processing techniques") brings GAN data to within 2.03 points of real data on Fashion-MNIST; the first of its
post-processing steps is this filter: a classifier trained on the real training data scores each generated image,
and images whose probability for the class they were generated for falls below a threshold are drawn again. It
trades sampling work (the rejected draws) for class fidelity: a generator whose class-conditional samples drift
into other classes teaches a CAS classifier wrong labels, and the filter removes those.

Measured (quick profile's flow and domain classifier, 2,000 samples, 2-core VM): the judge is trained with label
smoothing 0.1, so its probabilities top out near 0.95 and real validation images have a median of 0.90; at 0.5 it
keeps 71% of real shirts (class 6) and 82-99% of the other classes, but only 29% of the flow's shirts and 49% of its
coats (class 4), where the flow's class fidelity is weakest; at 0.9 some flow shirts were still rejected after 30
draws. The threshold is therefore a probability well below 0.9.

CAS (`scripts/flow_sampler_cas.py --profile quick`, 2,500-step classifier, seeds 0-2, validation, paired against
the default sampler heun:4, Holm over 3, TOST +-1 pt; 2-core VM): threshold 0.5 scored 83.67% against 82.55%,
+1.12 [-1.34, +3.58] pts, and 0.25 scored 83.81%, +1.25 [-1.48, +3.99]: both inconclusive, at 22.6 and 18.2
network evaluations per kept image against 16. A point at most, not the 5 that CAS >= 0.95 x real needs here: the
rest of the gap is in the generator, not in its mislabelled draws. Off by default (no family uses it unasked).
(The heun:4 rows were recorded earlier the same day, before sampler rows took their full names, from the same
cached flow and classifier code; `--reference heun:4` pairs them.)
On the paper profile's flow trained 8x longer (32,000 steps; `--gen-steps 32000`, the 6,000-step classifier, seeds
0-2, 2-core VM) the filter at 0.5 keeps 92% of draws and is equivalent to the unfiltered sampler: 87.79% against
88.01% validation CAS, -0.22 [-0.53, +0.09] pts (TOST +-1 pt): longer training fixed what it would filter.

The judge here is the domain feature extractor's classifier (`quality.domain_extractor`): trained on the pool only
(never validation or test), so the filter uses no data a real arm could not use. The threshold is a setting to be
chosen on validation CAS (`scripts/flow_sampler_cas.py`, `name:steps@threshold`), never on test.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import train


class ClassifierFiltered:
    """`gen` behind a rejection filter: `sample(labels)` redraws each image until `judge` gives its label a
    probability >= `threshold`. Has what `sample_pool` and `cells.pool_cas` use (`num_classes`, `image_shape`,
    `to`, `sample`) and counts what the filter cost (`drawn`, `kept`, `acceptance`, since `reset_counts`).

    Same rng -> same images on the same hardware. Across devices, one judge decision that flips at the threshold
    (float rounding) changes how many draws the rng serves, so every later image of the pool differs: pools from a
    GPU and a CPU are different draws of the same distribution, not copies."""

    def __init__(self, gen, judge: nn.Module, threshold: float, max_rounds: int = 30):
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise ValueError(f"threshold={threshold!r} must be a probability in (0, 1) (0 would keep every sample)")
        train.check_positive("max_rounds", max_rounds)
        self.gen, self.judge, self.threshold, self.max_rounds = gen, judge.eval(), float(threshold), max_rounds
        self.num_classes, self.image_shape = gen.num_classes, gen.image_shape
        self.reset_counts()

    def to(self, device) -> ClassifierFiltered:
        self.gen = self.gen.to(device)
        self.judge = self.judge.to(device)
        return self

    def reset_counts(self) -> None:
        """Start counting draws afresh (e.g. per pool, so `acceptance` describes that pool alone)."""
        self.drawn = self.kept = 0

    @property
    def acceptance(self) -> float:
        """Share of the draws so far that passed the filter (each kept image cost 1 / acceptance draws)."""
        return self.kept / self.drawn if self.drawn else math.nan

    def evaluations_per_sample(self) -> float:
        """The generator's network evaluations per kept image: its own per draw, over the acceptance so far."""
        return self.gen.evaluations_per_sample() / self.acceptance if self.kept else math.inf

    @torch.no_grad()
    def class_probability(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The judge's probability of each image's label; images as float [0, 1], quantised to uint8 levels first,
        as `sample_pool` stores them."""
        device = next(self.judge.parameters()).device
        x = train.to_model_input(images.mul(255).round_().to(torch.uint8), device, channels_last=False)
        return self.judge(x).float().softmax(1).gather(1, labels.to(device)[:, None]).squeeze(1).cpu()

    def sample(self, labels, rng: torch.Generator | None = None) -> torch.Tensor:
        labels = self.gen.check_labels(labels)
        out, todo = None, torch.arange(len(labels))
        for _ in range(self.max_rounds):
            x = self.gen.sample(labels[todo], rng=rng).cpu()
            out = torch.empty((len(labels), *x.shape[1:]), dtype=x.dtype) if out is None else out
            keep = self.class_probability(x, labels[todo]) >= self.threshold
            out[todo[keep]] = x[keep]
            self.drawn, self.kept = self.drawn + len(todo), self.kept + int(keep.sum())
            todo = todo[~keep]
            if not len(todo):
                return out
        rejected = ", ".join(str(c) for c in sorted(set(labels[todo].tolist())))
        raise ValueError(f"threshold={self.threshold}: {len(todo)} of {len(labels)} samples (classes {rejected}) were "
                         f"still rejected after max_rounds={self.max_rounds} draws each; lower the threshold "
                         f"(the judge rarely reads this generator's images of those classes as their class)")
