"""Generator quality: a frozen domain feature extractor, FID / KID, precision / recall / density / coverage, CAS.

Inception features mean little on 28x28 grey clothes and cannot be downloaded here anyway, so every distance is
measured in the feature space of a *domain* classifier: the study's CNN trained on the real train pool (never the
test split) to its plateau, cached like a generator; its validation accuracy is measured on every load
(`FeatureExtractor.val_accuracy`, the bar is 92% on Fashion-MNIST) so that a reader knows the space is a good one.
A second, independent space (`contrastive_extractor`: the same backbone trained without labels, SimCLR on pixel
views of the pool) checks that conclusions drawn in the first do not hinge on it.

The formulas are the field's kept implementations, not ours: torchmetrics'
`FrechetInceptionDistance` / `KernelInceptionDistance` (given our extractor as their feature module) and the
`prdc` package (Naeem et al. 2020). CAS (classification accuracy score, Ravuri & Vinyals 2019) is the headline: a
classifier trained only on synthetic images, scored on the real test split.

    >>> from synthstudy import quality
    >>> extractor = quality.domain_extractor(pool, dataset="fashion_mnist", steps=3000, val=val)   # cached
    >>> extractor.val_accuracy                                                                  # 0.93
    >>> second = quality.contrastive_extractor(pool, dataset="fashion_mnist", steps=600)        # cached
    >>> scores = quality.sample_quality(extractor, real=val, fake=fake_set)   # fid, kid, precision, ..., per class
    >>> quality.cas(generator, test=splits.test, cfg=train_cfg, model="cnn")  # accuracy on real test

Numbers from different extractors are not comparable: the extractor's cache key is recorded with every score.
"""
from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

from . import models, runs, sources, train
from .data import ImageSet

__all__ = ["FeatureExtractor", "contrastive_extractor", "domain_extractor", "fid", "kid", "prdc", "sample_quality",
           "cas"]


class FeatureExtractor(nn.Module):
    """The penultimate-layer features of a frozen classifier; accepts uint8 [0, 255] or float [0, 1] images.

    `num_features` is what torchmetrics reads to size its statistics. `forward` runs on the module's device;
    `embed` batches a whole set and returns float32 features on the CPU.
    """

    # class-level defaults: extractors pickled before these attributes existed load without them
    val_accuracy: float | None = None      # set by domain_extractor(..., val=...) on every load
    train_losses: tuple = ()               # (step, mean loss) of its training run

    def __init__(self, classifier: nn.Module, key: dict):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = int(classifier.feature_dim)
        self.key = dict(key)

    @property
    def device(self) -> torch.device:
        return next(self.classifier.parameters()).device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = train.to_model_input(images, self.device, channels_last=False)
        return self.classifier.features(x).float()

    @torch.no_grad()
    def embed(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        self.classifier.eval()
        return torch.cat([self(images[i:i + batch_size]).cpu() for i in range(0, len(images), batch_size)])


def domain_extractor(pool: ImageSet, dataset: str, steps: int, seed: int = 0, model: str = "cnn",
                     augment: str = "flip_crop", batch_size: int = 128, device: str = "auto",
                     progress: bool = True, val: ImageSet | None = None) -> FeatureExtractor:
    """Train (once; cached by a hash of its inputs) the domain classifier on the real `pool` and freeze it.

    `pool` must be training data only (the train split minus any validation holdout): the extractor defines the
    space every quality number is measured in, so it must not have seen the test split. With `val` (the validation
    holdout), its accuracy there is measured after loading and kept as `val_accuracy` (a measurement, not an input:
    not part of the cache key). Why a few thousand steps (measured by `make bench` on all of Fashion-MNIST,
    128 images per step): 92.45% after ≈1,350 steps, 93.3% after ≈3,000, 93.7% after ≈3,800; the 600 steps used
    before gave a space whose accuracy nobody had checked.
    """
    from .generators import data_fingerprint
    key = {"dataset": dataset, "pool_size": len(pool), "data_sha": data_fingerprint(pool), "steps": steps,
           "seed": seed, "model": model, "augment": augment, "batch_size": batch_size, "version": 1}

    def build() -> FeatureExtractor:
        cfg = train.TrainConfig(steps=steps, batch_size=batch_size, augment=augment, tta="none", seed=seed,
                                device=device, progress=progress, channels_last=False)
        net = models.create_model(model, pool.images.shape[1], int(pool.labels.max()) + 1, pool.images.shape[-1],
                                  seed=seed)
        result = train.fit(net, sources.ImageSetSource(pool), cfg)
        extractor = FeatureExtractor(result.model.cpu(), key)
        extractor.train_losses = list(result.losses)
        return extractor

    extractor = runs.cached("extractors", key, build)
    if val is not None:
        cfg = train.TrainConfig(steps=1, tta="none", device="cpu", progress=False, channels_last=False)
        extractor.val_accuracy = train.evaluate(extractor.classifier, val, cfg)["accuracy"]
    return extractor


def contrastive_extractor(pool: ImageSet, dataset: str, steps: int, seed: int = 0, model: str = "cnn",
                          batch_size: int = 128, device: str = "auto", progress: bool = True) -> FeatureExtractor:
    """A second feature space, independent of the domain classifier's: the backbone trained without labels
    (SimCLR on two pixel augmentations of each pool image, `contrastive.fit`), frozen and cached.

    Its objective (tell images apart, not classes) differs, so a generator ranking that holds in both spaces does not
    hinge on what the classifier learned to ignore. Measured (design notes, 2 cores): 600 steps of 128 pairs in 21 s,
    linear probe 83.4% (3,000 steps: 83.6%, so 600 is at the plateau).
    """
    from . import contrastive
    from .generators import data_fingerprint
    key = {"kind": "simclr", "dataset": dataset, "pool_size": len(pool), "data_sha": data_fingerprint(pool),
           "steps": steps, "seed": seed, "model": model, "batch_size": batch_size, "version": 1}

    def build() -> FeatureExtractor:
        size = pool.images.shape[-1]
        encoder = contrastive.create_encoder(model, pool.images.shape[1], size, seed=seed,
                                             num_classes=int(pool.labels.max()) + 1)
        views = contrastive.make_views("pixel", real=pool, augment=contrastive.PixelAugment.for_dataset(dataset, size))
        cfg = contrastive.ContrastiveConfig(method="simclr", steps=steps, batch_size=batch_size, seed=seed,
                                            device=device, progress=progress)
        result = contrastive.fit(encoder, views, cfg)
        extractor = FeatureExtractor(result.encoder.cpu().to(memory_format=torch.contiguous_format), key)
        extractor.train_losses = list(result.losses)
        return extractor

    return runs.cached("extractors", key, build)


class _Precomputed(nn.Module):
    """Identity "feature extractor": lets torchmetrics' FID/KID run their formulas on features we computed once."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to the two feature sets (torchmetrics' implementation).

    The features go in as they are, in float64: `normalize=False`, so no version of torchmetrics can turn them
    into uint8 "images" on the way (its `normalize=True` path does `(x * 255).byte()` for its own Inception, which
    would clip every feature to 0..255 integers). A test checks that shifting both sets changes nothing.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    metric = FrechetInceptionDistance(feature=_Precomputed(real_features.shape[1]), normalize=False)
    metric.update(real_features.double(), real=True)
    metric.update(fake_features.double(), real=False)
    return float(metric.compute())


def kid(real_features: torch.Tensor, fake_features: torch.Tensor, subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel (cubic polynomial) MMD between the sets: mean and std over random subsets (torchmetrics)."""
    from torchmetrics.image.kid import KernelInceptionDistance
    size = min(subset_size, len(real_features), len(fake_features))
    with warnings.catch_warnings():                      # "will save all extracted features": they are small
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=_Precomputed(real_features.shape[1]), subsets=subsets,
                                         subset_size=size, normalize=False)   # features as they are (see `fid`)
    metric.update(real_features.double(), real=True)
    metric.update(fake_features.double(), real=False)
    with torch.random.fork_rng(devices=[]):          # KID draws its subsets from the global RNG
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def prdc(real_features: torch.Tensor, fake_features: torch.Tensor, nearest_k: int = 5) -> dict:
    """Precision, recall, density and coverage (Naeem et al. 2020) with the `prdc` package, k nearest neighbours."""
    from prdc import compute_prdc
    with contextlib.redirect_stdout(io.StringIO()):      # prdc prints the set sizes on every call
        out = compute_prdc(real_features=real_features.double().numpy(),
                           fake_features=fake_features.double().numpy(), nearest_k=nearest_k)
    return {k: float(v) for k, v in out.items()}


def sample_quality(extractor: FeatureExtractor, real: ImageSet, fake: ImageSet, nearest_k: int = 5,
                   per_class: bool = True) -> dict:
    """FID, KID (mean), precision, recall, density, coverage of `fake` against `real`, overall and per class.

    Use a real set the generator never trained on (the validation holdout) of about the same size as `fake`:
    FID is biased by the sample size, so compare numbers only at equal sizes. `fake.images` may be float [0, 1]
    (samples as the generator made them) or uint8.
    """
    if len(real) < 2 * nearest_k or len(fake) < 2 * nearest_k:
        raise ValueError(f"sample_quality needs at least {2 * nearest_k} real and fake images "
                         f"(nearest_k={nearest_k}), got {len(real)} and {len(fake)}")
    real_f, fake_f = extractor.embed(real.images), extractor.embed(fake.images)

    def scores(r, f) -> dict:
        return {"fid": fid(r, f), "kid": kid(r, f)[0], **prdc(r, f, nearest_k)}

    out = scores(real_f, fake_f)
    if per_class:
        out["per_class"] = {}
        for c in torch.unique(real.labels).tolist():
            r, f = real_f[real.labels == c], fake_f[fake.labels == c]
            if min(len(r), len(f)) > 2 * nearest_k:
                out["per_class"][int(c)] = scores(r, f)
    return out


def cas(synthetic_source, test: ImageSet, cfg: train.TrainConfig, model: str = "cnn", val: ImageSet | None = None,
        num_classes: int | None = None) -> dict:
    """Classification accuracy score: train `model` with `cfg` on batches from `synthetic_source` only (a
    `sources.GeneratorStream`, or an `ImageSetSource` over a sampled pool), score on real `test` (and `val`).

    Give it the same model and `cfg` as the real-data arm it is compared with: the ratio CAS / real accuracy is
    then about the data alone.
    """
    c, h = test.images.shape[1], test.images.shape[-1]
    num_classes = num_classes or int(test.labels.max()) + 1
    net = models.create_model(model, c, num_classes, h, seed=cfg.seed)
    result = train.fit(net, synthetic_source, cfg)
    out = {"cas": None, "train_seconds": result.seconds}
    scored = train.evaluate(result.model, test, cfg)
    out.update(cas=scored["accuracy"], per_class_cas=scored["per_class_accuracy"])
    if val is not None:
        out["val_accuracy"] = train.evaluate(result.model, val, cfg)["accuracy"]
    return out
