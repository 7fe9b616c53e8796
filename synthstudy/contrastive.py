"""Contrastive representation learning from real or generated views (SimCLR / SupCon), and its evaluation.

The seed paper's idea (GenRep): a class-conditional generator gives positive pairs for contrastive learning by
decoding nearby latent codes, z and z + sigma * eps of the same class, instead of (or besides) pixel augmentations
of one image. This module holds the pieces every arm of notebooks/multiview shares:

    >>> from synthstudy import contrastive as C, data
    >>> splits = data.load("digits")
    >>> augment = C.PixelAugment.for_dataset("digits", image_size=8)
    >>> views = C.make_views("pixel", real=splits.train, augment=augment)            # real SimCLR baseline
    >>> views = C.make_views("latent", gen=gen, sigma=0.5)                            # generated views
    >>> enc = C.create_encoder("cnn", in_channels=1, image_size=8, seed=0)
    >>> result = C.fit(enc, views, C.ContrastiveConfig(method="simclr", steps=200, batch_size=128, seed=0))
    >>> scores, probe = C.evaluate(result.encoder, fit_set=splits.train, score_sets={"test": splits.test})

- losses: `nt_xent` (SimCLR) and `supcon` (Khosla et al. 2020, the "L_out" form); `contrastive_loss(method, ...)`.
- views (all yield `(x1, x2, labels)`, float images in [0, 1]): `RealViews` (two pixel augmentations of one real
  image) and `GeneratedViews` with kind `pixel` (one decoded image, two pixel augmentations), `latent` (decode z
  and its neighbour; optional truncation) or `latent_pixel` (both). The neighbour is z + sigma * eps (`additive`,
  GenRep's) or (z + sigma * eps) / sqrt(1 + sigma^2) (`variance_preserving`: both views stay on the N(0, I) prior).
  `make_views` builds and checks either.
- `label_free(gen)`: the generator's class-free path (the flow's null class of classifier-free guidance, or the
  PCA-Gaussian's single Gaussian over all classes): views that share no class label, the control that separates
  "generated views help" from "the class label the two views share leaks through the generator".
- encoder: the registry's model (`models.create_model`) with its penultimate `features` and an MLP projection head.
- `fit`: the one contrastive training loop for every arm (the classifier recipe of `train.fit`: SGD-Nesterov,
  one-cycle `train.lr_at`, channels_last, seeded and deterministic on CPU).
- evaluation on frozen features: `LinearProbe` (logistic regression) and `knn_accuracy` (cosine, weighted vote);
  `evaluate` fits them on `fit_set` only and scores every split in `score_sets`, so the test split is never used
  for fitting or for choosing anything.
- `multiview_key` / `multiview_cell`: one grid cell of notebooks/multiview (a module-level function that loads its
  data and generator from the key, so `runs.Run.grid` can run it in another process).
"""
from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import data, models, train
from .data import ImageSet
from .progress import tqdm
from .sources import ImageSetSource

METHODS = ("simclr", "supcon")
VIEW_KINDS = ("pixel", "latent", "latent_pixel")
NOISE_KINDS = ("additive", "variance_preserving")     # how a latent view's neighbour is drawn (GeneratedViews)
# Families with a class-free path (`label_free`): the flow's null class (trained for classifier-free guidance) and
# the PCA-Gaussian, whose PCA coefficients over all classes are exactly N(0, diag(explained variance)).
LABEL_FREE_FAMILIES = ("flow", "pca_gaussian")
# Bump when the training or scoring recipe of a multiview cell changes: it is part of every cell key, so a changed
# recipe reruns its cells. 2: neighbour noise kind, label-free views, cells load their own inputs from the key.
ENCODER_VERSION = 2

def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is unknown; allowed values: {', '.join(allowed)}")


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be a number > 0 (0.1-0.5 is usual)")
    return float(temperature)


def _check_sigma(sigma) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (sigma >= 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma={sigma!r} must be a finite number >= 0 (0 = both views decode the same latent)")
    return float(sigma)


# ---------------------------------------------------------------- losses
def _similarities(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities / temperature between all 2B projections, and the mask of each row's own entry."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"the two views' projections must both be (B, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / _check_temperature(temperature)
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    # an anchor is never its own negative: -inf drops it from every softmax denominator
    return sim.masked_fill(self_mask, float("-inf")), self_mask


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss: each of the 2B projections must pick its own pair among the other 2B - 1.

    z1[i] and z2[i] are the two views of sample i (projections, any scale: they are L2-normalised here). The
    loss is the cross-entropy of softmax(cos / temperature) over the other 2B - 1 entries, averaged over 2B anchors.
    """
    sim, _ = _similarities(z1, z2, temperature)
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(sim.device)
    return F.cross_entropy(sim, target)


def supcon(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, L_out): every other projection of the same class is a positive.

    For anchor i with positives P(i): -1/|P(i)| sum_p log softmax_i(p), the softmax over all 2B - 1 others.
    With all labels distinct it equals `nt_xent` (the only positive is the other view).
    """
    if labels.shape != (len(z1),):
        raise ValueError(f"labels must have shape ({len(z1)},), got {tuple(labels.shape)}")
    if len(labels) and int(labels.min()) < 0:
        raise ValueError("supcon needs class labels, but these pairs have none (label-free views mark them -1); "
                         "allowed with label-free views: method='simclr'")
    sim, self_mask = _similarities(z1, z2, temperature)
    y = torch.cat([labels, labels]).to(sim.device)
    positives = (y[:, None] == y[None, :]) & ~self_mask
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    per_anchor = log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1)
    return -per_anchor.mean()


def contrastive_loss(method: str, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None,
                     temperature: float) -> torch.Tensor:
    """`nt_xent` for method='simclr' (labels unused), `supcon` for method='supcon'."""
    _check_choice("method", method, METHODS)
    if method == "simclr":
        return nt_xent(z1, z2, temperature)
    if labels is None:
        raise ValueError("method='supcon' needs the labels of the pairs")
    return supcon(z1, z2, labels, temperature)


# ---------------------------------------------------------------- pixel augmentations
@dataclass(frozen=True)
class PixelAugment:
    """SimCLR-style augmentations for small grey images, as batch tensor ops (one affine resample per batch).

    A random resized crop (area share in [crop_min, 1], aspect ratio in [3/4, 4/3]) with an optional horizontal
    flip in the same `grid_sample`, then brightness and contrast factors in [1 - jitter, 1 + jitter]. Colour jitter
    and greyscale, SimCLR's other strong augmentations, have no meaning on one-channel images.
    """

    crop_min: float = 0.35
    flip: bool = True
    jitter: float = 0.4

    def __post_init__(self):
        if not 0 < self.crop_min <= 1:
            raise ValueError(f"crop_min={self.crop_min!r} must be in (0, 1] (smallest crop area, share of the image)")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter={self.jitter!r} must be in [0, 1)")

    @classmethod
    def for_dataset(cls, dataset: str, image_size: int) -> PixelAugment:
        """The strength suited to the data: flips only where they keep the class; milder crops on tiny images
        (a 35% crop of an 8x8 digit keeps about 5x5 pixels, too little to tell its class)."""
        _check_choice("dataset", dataset, tuple(data.FLIPS_KEEP_CLASS))
        return cls(crop_min=0.35 if image_size >= 16 else 0.6, flip=data.FLIPS_KEEP_CLASS[dataset])

    def __call__(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """Float images (B, C, H, W) in [0, 1] -> augmented images, same shape and range."""
        b = len(x)
        u = torch.rand(b, 6, generator=rng, dtype=torch.float32)
        area = self.crop_min + (1 - self.crop_min) * u[:, 0]
        # the aspect ratio varies only with cropping on: crop_min=1 leaves images whole (then only flips, jitter)
        log_ratio = (2 * u[:, 1] - 1) * math.log(4 / 3) * (self.crop_min < 1)
        w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)          # crop width / image width
        h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        cx = (2 * u[:, 2] - 1) * (1 - w)                            # centre, crop stays inside the image
        cy = (2 * u[:, 3] - 1) * (1 - h)
        sign = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if self.flip else torch.ones(b)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * sign, cx, h, cy
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.jitter:
            # contrast around each image's mean, then brightness; separate draws so the two do not cancel
            extra = torch.rand(b, 2, generator=rng)
            contrast = (1 + self.jitter * (2 * extra[:, 0] - 1)).to(x.device)[:, None, None, None]
            bright = (1 + self.jitter * (2 * extra[:, 1] - 1)).to(x.device)[:, None, None, None]
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = ((out - mean) * contrast + mean) * bright
        return out.clamp_(0, 1)


# ---------------------------------------------------------------- view sources
class RealViews:
    """Two pixel augmentations of each sampled real image: the real-data SimCLR / SupCon baseline."""

    kind = "pixel"

    def __init__(self, images: ImageSet, augment: PixelAugment):
        if not isinstance(augment, PixelAugment):
            raise ValueError("RealViews needs augment=PixelAugment(...) (real images have no latent to perturb)")
        self.source, self.augment = ImageSetSource(images), augment

    def next_pair(self, batch_size: int, rng: torch.Generator):
        images, labels = self.source.next_batch(batch_size, rng)
        x = images.float().div(255)
        return self.augment(x, rng), self.augment(x, rng), labels


class GeneratedViews:
    """Positive pairs decoded by a class-conditional generator (any family of `synthstudy.generators`).

    kind:
    - `pixel`: one decoded image per anchor, two pixel augmentations of it (SimCLR on synthetic images).
    - `latent`: the images of z and its neighbour (eps ~ N(0, I)), same class; no pixel augmentation.
    - `latent_pixel`: the latent pair, then a pixel augmentation of each view.

    noise: `additive` z + sigma * eps (GenRep's choice): the neighbour's norm grows by sqrt(1 + sigma^2), off the
    prior the generator was trained on; `variance_preserving` (z + sigma * eps) / sqrt(1 + sigma^2): the neighbour
    is again an N(0, I) draw, correlated 1 / sqrt(1 + sigma^2) with z per coordinate, so a large sigma means a
    different sample of the same class, never an off-prior image.
    A `LabelFreeGenerator` (see `label_free`) decodes without class; its pairs carry labels -1 (unknown).

    `anchors=None` draws a fresh latent for every pair (online: unlimited anchors); an integer M draws a fixed pool
    of M latents with balanced classes once (seeded by `seed`) and samples pairs from it epoch by epoch, so only the
    neighbour noise (and the pixel augmentation) is new at each visit.
    `truncation=t > 0`: anchor entries with |z| > t are redrawn from the prior and neighbours are clamped to
    [-t, t], keeping both views where the generator was trained (0 = off).
    """

    def __init__(self, gen, kind: str, sigma: float = 0.0, truncation: float = 0.0, anchors: int | None = None,
                 augment: PixelAugment | None = None, seed: int = 0, noise: str = "additive"):
        _check_choice("kind", kind, VIEW_KINDS)
        _check_choice("noise", noise, NOISE_KINDS)
        self.noise = noise
        self.sigma = _check_sigma(sigma)
        if kind == "pixel" and self.sigma != 0:
            raise ValueError(f"sigma={sigma!r} has no effect on kind='pixel' views (one latent per pair); "
                             "use kind='latent' or 'latent_pixel', or sigma=0")
        if "pixel" in kind and not isinstance(augment, PixelAugment):
            raise ValueError(f"kind={kind!r} needs augment=PixelAugment(...)")
        if isinstance(truncation, bool) or not isinstance(truncation, (int, float)) or not truncation >= 0:
            raise ValueError(f"truncation={truncation!r} must be a number >= 0 (0 = off)")
        if anchors is not None and (isinstance(anchors, bool) or not isinstance(anchors, int) or anchors <= 0):
            raise ValueError(f"anchors={anchors!r} must be a positive integer (a fixed pool) or None (online)")
        self.gen, self.kind, self.truncation = gen, kind, float(truncation)
        self.augment = augment if "pixel" in kind else None
        self.anchors = anchors
        if anchors is not None:
            rng = torch.Generator().manual_seed(seed)
            labels = torch.arange(anchors) % gen.num_classes
            self.pool_labels = labels[torch.randperm(anchors, generator=rng)]
            self.pool_z = self._anchor_latents(self.pool_labels, rng)
            self._queue = torch.empty(0, dtype=torch.long)

    def _anchor_latents(self, labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        z = self.gen.sample_latents(labels, rng=rng)
        if self.truncation:
            for _ in range(50):        # redraw from the family's own prior, whatever it is
                bad = z.abs() > self.truncation
                if not bad.any():
                    break
                z = torch.where(bad, self.gen.sample_latents(labels, rng=rng), z)
            z = z.clamp(-self.truncation, self.truncation)   # a tiny t could leave a few: clamp those
        return z

    def _anchor_batch(self, batch_size: int, rng: torch.Generator):
        if self.anchors is None:
            labels = torch.randint(0, self.gen.num_classes, (batch_size,), generator=rng)
            return self._anchor_latents(labels, rng), labels
        while len(self._queue) < batch_size:
            self._queue = torch.cat([self._queue, torch.randperm(self.anchors, generator=rng)])
        idx, self._queue = self._queue[:batch_size], self._queue[batch_size:]
        return self.pool_z[idx], self.pool_labels[idx]

    def neighbours(self, z: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """The neighbour of each anchor (`noise` kind), clamped to [-t, t] under truncation; eps is drawn even at
        sigma=0 (same RNG stream at every sigma, so a sweep's rows differ only in sigma)."""
        return neighbour(z, torch.randn(z.shape, generator=rng), self.sigma, self.noise, self.truncation)

    def next_pair(self, batch_size: int, rng: torch.Generator):
        z, labels = self._anchor_batch(batch_size, rng)
        known = labels if not isinstance(self.gen, LabelFreeGenerator) else torch.full_like(labels, -1)
        if self.kind == "pixel":
            x = self.gen.decode(z, labels)
            return self.augment(x, rng), self.augment(x, rng), known
        z2 = self.neighbours(z, rng)
        x1, x2 = self.gen.decode(torch.cat([z, z2]), torch.cat([labels, labels])).chunk(2)   # one decoder call
        if self.augment is not None:
            x1, x2 = self.augment(x1, rng), self.augment(x2, rng)
        return x1, x2, known


def neighbour(z: torch.Tensor, eps: torch.Tensor, sigma: float, noise: str = "additive",
              truncation: float = 0.0) -> torch.Tensor:
    """z + sigma * eps (`additive`) or (z + sigma * eps) / sqrt(1 + sigma^2) (`variance_preserving`), then
    clamped to [-truncation, truncation] when truncation > 0."""
    _check_choice("noise", noise, NOISE_KINDS)
    z2 = z + _check_sigma(sigma) * eps
    if noise == "variance_preserving":
        z2 = z2 / math.sqrt(1 + sigma ** 2)
    return z2.clamp(-truncation, truncation) if truncation else z2


class LabelFreeGenerator:
    """A class-conditional generator's class-free path, with the latent interface views use (`label_free`).

    `decode(z, labels)` ignores the labels: for the flow it integrates the null-class velocity (the unconditional
    model classifier-free guidance trains, one evaluation per ODE step: guidance mixes v_uncond + w (v_cond -
    v_uncond), which is v_uncond whatever w when the class is null); for the PCA-Gaussian it decodes z with the
    Gaussian of all classes' PCA coefficients, N(0, diag(explained variance)) -- exact, since PCA centres the data
    and diagonalises its covariance. Latents are drawn from the generator's own prior.
    """

    def __init__(self, gen):
        family = getattr(gen, "family", type(gen).__name__)
        if family not in LABEL_FREE_FAMILIES:
            raise ValueError(f"generator family {family!r} has no label-free path; allowed values: "
                             f"{', '.join(LABEL_FREE_FAMILIES)}")
        if family == "flow" and not gen.config.get("p_uncond", 0) > 0:
            raise ValueError("this flow was trained with p_uncond=0: its null class never learned the unconditional "
                             "velocity; allowed: a flow with p_uncond > 0")
        self.gen, self.family = gen, family
        self.num_classes, self.latent_dim = gen.num_classes, gen.latent_dim
        if family == "flow":           # a shallow copy whose only difference is guidance 1: the null velocity once
            self._flow = copy.copy(gen)
            self._flow.config = {**gen.config, "guidance": 1.0}

    @property
    def device(self) -> torch.device:
        return self.gen.device

    def sample_latents(self, labels, rng: torch.Generator | None = None) -> torch.Tensor:
        return self.gen.sample_latents(labels, rng=rng)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """Latents -> float images (B, C, H, W) in [0, 1] on CPU, with no class information; `labels` unused."""
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (B, latent_dim={self.latent_dim}), got {tuple(z.shape)}")
        dev = self.gen.device
        z = z.to(dev, torch.float32)
        if self.family == "flow":
            null = torch.full((len(z),), self.gen.num_classes, dtype=torch.long, device=dev)
            x = self._flow._decode(z, null)
        else:
            pca = self.gen
            x = (pca.mean + (z * pca.explained_variance.sqrt()) @ pca.components).view(len(z), *pca.image_shape)
        return x.float().clamp_(0, 1).cpu()


def label_free(gen) -> LabelFreeGenerator:
    """The class-free path of `gen` (families in LABEL_FREE_FAMILIES): views from it share no class label."""
    return LabelFreeGenerator(gen)


def make_views(kind: str, *, real: ImageSet | None = None, gen=None, sigma: float = 0.0, truncation: float = 0.0,
               anchors: int | None = None, augment: PixelAugment | None = None, seed: int = 0,
               noise: str = "additive"):
    """A view source: `RealViews` when `real` is given (kind must be 'pixel'), else `GeneratedViews` of `gen`."""
    _check_choice("kind", kind, VIEW_KINDS)
    if (real is None) == (gen is None):
        raise ValueError("make_views needs exactly one of real=ImageSet (real views) or gen=Generator (generated)")
    if real is not None:
        if kind != "pixel":
            raise ValueError(f"kind={kind!r} needs a generator (real images have no latent); allowed with real: pixel")
        return RealViews(real, augment)
    return GeneratedViews(gen, kind, sigma=sigma, truncation=truncation, anchors=anchors, augment=augment, seed=seed,
                          noise=noise)


@torch.no_grad()
def view_pairs(gen, sigmas, labels, seed: int = 0, truncation: float = 0.0, noise: str = "additive") -> torch.Tensor:
    """Images for a figure: row 0 the anchors G(z, y), row r the neighbour view at sigmas[r-1] (`noise` kind), one
    shared eps per anchor (so rows differ only in sigma). Returns (1 + len(sigmas), len(labels), C, H, W) in [0, 1]."""
    labels = torch.as_tensor(labels).long()
    rng = torch.Generator().manual_seed(seed)
    src = GeneratedViews(gen, "latent", sigma=0.0, truncation=truncation)
    z = src._anchor_latents(labels, rng)
    eps = torch.randn(z.shape, generator=rng)
    rows = [z] + [neighbour(z, eps, s, noise, truncation) for s in sigmas]
    x = gen.decode(torch.cat(rows), labels.repeat(len(rows)))
    return x.view(len(rows), len(labels), *x.shape[1:])


# ---------------------------------------------------------------- encoder
class Encoder(nn.Module):
    """A registry backbone (its penultimate `features`) plus an MLP projection head, as in SimCLR.

    The loss sees the projection; evaluation uses the backbone features below it, which keep more information
    about the image (Chen et al. 2020, section 4.2).
    """

    def __init__(self, backbone: nn.Module, proj_dim: int = 64, hidden_dim: int | None = None):
        super().__init__()
        train.check_positive("proj_dim", proj_dim)
        d = backbone.feature_dim
        hidden_dim = hidden_dim or d
        self.backbone = backbone
        self.feature_dim = d
        self.head = nn.Sequential(nn.Linear(d, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                  nn.Linear(hidden_dim, proj_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def create_encoder(model: str, in_channels: int, image_size: int, seed: int, proj_dim: int = 64,
                   num_classes: int = 10) -> Encoder:
    """`models.create_model(model, ...)` + a projection head, both initialised from `seed` only.

    `num_classes` sizes the backbone's classifier layer, which contrastive training leaves unused.
    """
    backbone = models.create_model(model, in_channels, num_classes, image_size, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)       # the head's own stream: its init does not depend on the backbone's size
        return Encoder(backbone, proj_dim=proj_dim)


# ---------------------------------------------------------------- training
@dataclass
class ContrastiveConfig:
    method: str = "simclr"            # one of METHODS: simclr (NT-Xent, labels unused) | supcon (labels: positives)
    steps: int = 300                  # optimizer steps; every arm gets the same budget (pairs seen = steps * batch)
    batch_size: int = 128             # pairs per step: the encoder sees 2x this many images; 2B - 2 negatives each
    lr: float = 0.3                   # peak one-cycle learning rate (SGD, Nesterov)
    temperature: float = 0.2          # softmax temperature of the loss; lower = harder negatives
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.1               # share of the steps spent warming the LR up (train.lr_at)
    seed: int = 0
    device: str = "auto"
    threads: int = 0                  # CPU threads; 0 = the cores this process may use
    channels_last: bool = True
    progress: bool = True

    def __post_init__(self):
        _check_choice("method", self.method, METHODS)
        train.check_positive("steps", self.steps)
        train.check_positive("batch_size", self.batch_size)
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size} must be >= 2 (a pair needs negatives)")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be > 0")
        _check_temperature(self.temperature)
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup={self.warmup!r} must be in [0, 1)")
        _check_choice("device", self.device if not self.device.startswith("cuda:") else "cuda", train.DEVICES)


@dataclass
class ContrastiveResult:
    encoder: Encoder
    seconds: float                      # wall time of the loop, view decoding included
    pairs_per_s: float
    losses: list = field(default_factory=list)    # (step, mean loss since the previous entry)
    config: dict = field(default_factory=dict)


def fit(encoder: Encoder, views, cfg: ContrastiveConfig, log_every: int = 25) -> ContrastiveResult:
    """Train `encoder` on pairs from `views` (real or generated) for `cfg.steps` steps. Same seed -> same run on CPU.

    Both views go through the encoder as one batch, so BatchNorm normalises them with the same statistics.
    """
    device, rng = train.setup(cfg.seed, cfg.device, cfg.threads)
    encoder = train.to_device(encoder, device, cfg.channels_last)
    opt = train.sgd_nesterov(encoder.parameters(), cfg)
    encoder.train()
    log = train.LossLog(log_every, cfg.steps, device, f"lower lr={cfg.lr}")
    start = time.perf_counter()
    for step in tqdm(range(cfg.steps), disable=not cfg.progress, desc=f"{cfg.method}", leave=False, mininterval=1.0):
        x1, x2, labels = views.next_pair(cfg.batch_size, rng)
        x = train.to_model_input(torch.cat([x1, x2]), device, cfg.channels_last)
        for group in opt.param_groups:
            group["lr"] = train.lr_at(step / cfg.steps, cfg)
        z1, z2 = encoder(x).chunk(2)
        loss = contrastive_loss(cfg.method, z1, z2, labels.to(device), cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.add(step, loss)
    seconds = time.perf_counter() - start
    return ContrastiveResult(encoder, seconds, cfg.steps * cfg.batch_size / seconds, log.points, asdict(cfg))


# ---------------------------------------------------------------- evaluation on frozen features
@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                     channels_last: bool = True) -> torch.Tensor:
    """Backbone features (N, D) as float32 on CPU, the encoder in eval mode (BatchNorm running statistics)."""
    device = next(encoder.parameters()).device
    encoder.eval()
    out = [encoder.features(train.to_model_input(images[i:i + batch_size], device, channels_last)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@dataclass
class LinearProbe:
    """Multinomial logistic regression on standardised frozen features, fitted on the features it is given only.

    Full-batch L-BFGS in torch (deterministic on CPU; scikit-learn's solver took ~50 s on 5,000 x 128 features on
    the 2-core reference machine, this takes about a second). The L2 strength is fixed, not tuned, so there is
    nothing to select on any split.
    """

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor            # (num_classes, D)
    bias: torch.Tensor              # (num_classes,)

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor, max_iter: int = 100, l2: float = 1e-3) -> LinearProbe:
        """Standardisation statistics and weights both come from (features, labels): nothing else is seen."""
        train.check_positive("max_iter", max_iter)
        if not l2 >= 0:
            raise ValueError(f"l2={l2!r} must be >= 0")
        features = features.float()
        mean, std = features.mean(0), features.std(0).clamp(min=1e-6)
        x = (features - mean) / std
        num_classes = int(labels.max()) + 1
        weight = torch.zeros(num_classes, x.shape[1], requires_grad=True)
        bias = torch.zeros(num_classes, requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(x @ weight.T + bias, labels) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        threads = torch.get_num_threads()
        torch.set_num_threads(1)     # a problem this small runs ~10x faster on one thread than on two
        try:
            with torch.enable_grad():
                opt.step(closure)
        finally:
            torch.set_num_threads(threads)
        return cls(mean, std, weight.detach(), bias.detach())

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.float() - self.mean) / self.std
        return (x @ self.weight.T + self.bias).argmax(1)

    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float:
        return float((self.predict(features) == labels).float().mean())


def knn_accuracy(ref_features: torch.Tensor, ref_labels: torch.Tensor, features: torch.Tensor, labels: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, chunk: int = 2048) -> float:
    """Accuracy of a k-nearest-neighbour vote (cosine similarity) among the reference features.

    Each of the k neighbours votes for its class with weight exp(cos / temperature), the k-NN monitor of
    Wu et al. 2018 that self-supervised papers report. Ties in the vote go to the lower class index.
    """
    train.check_positive("k", k)
    k = min(k, len(ref_features))
    ref = F.normalize(ref_features.float(), dim=1)
    num_classes = int(max(ref_labels.max(), labels.max())) + 1
    correct = 0
    for i in range(0, len(features), chunk):
        sim = F.normalize(features[i:i + chunk].float(), dim=1) @ ref.T
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes).scatter_add_(1, ref_labels[idx], (top / temperature).exp())
        correct += int((votes.argmax(1) == labels[i:i + chunk]).sum())
    return correct / len(features)


def evaluate(encoder: nn.Module, fit_set: ImageSet, score_sets: dict, knn_k: int = 20,
             probe_iters: int = 100) -> tuple[dict, LinearProbe]:
    """Fit the linear probe and the k-NN reference on `fit_set` alone; score them on each of `score_sets`.

    Returns ({"probe_accuracy_<name>": .., "knn_accuracy_<name>": ..} for each score set, the fitted probe).
    Pass the test split only in `score_sets`: nothing computed from it reaches the probe or the k-NN reference.
    """
    ref = extract_features(encoder, fit_set.images)
    probe = LinearProbe.fit(ref, fit_set.labels, max_iter=probe_iters)
    out = {}
    for name, split in score_sets.items():
        feats = extract_features(encoder, split.images)
        out[f"probe_accuracy_{name}"] = probe.accuracy(feats, split.labels)
        out[f"knn_accuracy_{name}"] = knn_accuracy(ref, fit_set.labels, feats, split.labels, k=knn_k)
    return out, probe


# ---------------------------------------------------------------- one cell of notebooks/multiview
SOURCES = ("none", "real", "synthetic")          # none: the untrained encoder, the floor every trained arm must beat


def multiview_key(params, source: str, method: str, views: str, seed: int, steps: int | None = None,
                  sigma: float | None = None, anchors: int | None = None, label_free: bool = False,
                  generator: str | None = None, init: int = 0) -> dict:
    """Everything that determines one multiview cell's result (its identity in `runs.Run.grid`).

    `params` is the notebook's `config.MultiviewParams`. Real arms leave the generator fields out (changing the
    generator does not retrain them); the untrained encoder leaves the training recipe out too. `steps` defaults to
    `params.mv_steps` (the budget check passes twice that); `generator` to `params.generator`. The key holds
    `ENCODER_VERSION` and the generator's `generators.cell_key` (budget, seed, code version, defaults), so a changed
    recipe or model reruns exactly the cells it touches. `init` (untrained encoder only) picks one of several
    random initialisations per seed (`mv_floor_inits`); the first, 0, keeps the key it always had.
    """
    from . import generators
    _check_choice("source", source, SOURCES)
    synthetic, trained = source == "synthetic", source != "none"
    name = (generator or params.generator) if synthetic else None
    if label_free and not synthetic:
        raise ValueError("label_free=True needs source='synthetic' (a generator's class-free path)")
    if init and trained:
        raise ValueError(f"init={init!r} is for source='none' (the floor's initialisations); trained arms use 0")
    gen_fields = (generators.cell_key(name, params.gen_steps[name], params.gen_seed) if synthetic
                  else dict.fromkeys(["gen_steps", "gen_seed", "gen_identity"]))
    return {"encoder_version": ENCODER_VERSION, "dataset": params.dataset, "model": params.model, "source": source,
            "method": method, "views": views, "generator": name, "label_free": bool(label_free) if synthetic else None,
            "sigma": None if sigma is None else float(sigma),
            "noise": params.view_noise if synthetic and "latent" in views else None,
            "truncation": params.latent_truncation if synthetic else None, "anchors": anchors, "seed": seed,
            **gen_fields,
            "steps": (steps or params.mv_steps) if trained else None,
            "batch_size": params.mv_batch_size if trained else None, "lr": params.mv_lr if trained else None,
            "temperature": params.mv_temperature if trained else None,
            "val_size": params.val_size, "probe_size": params.mv_probe_size, "eval_size": params.mv_eval_size,
            "knn_k": params.mv_knn_k, **({"init": int(init)} if init else {})}


# An untrained encoder's initialisation `init` > 0 of seed s draws its weights from seed s + INIT_STRIDE * init: far
# from the study's seeds, so no floor initialisation repeats a trained arm's starting weights.
INIT_STRIDE = 100_003


@dataclass(frozen=True)
class MultiviewInputs:
    """What every multiview cell of one dataset shares: the real images it trains on, fits the probe on and scores."""

    image_shape: tuple
    num_classes: int
    classes: tuple
    pool: ImageSet                 # train split minus the validation holdout: real views and the generator's data
    probe_set: ImageSet            # stratified pool subset the linear probe and the k-NN reference are fitted on
    score_sets: dict               # {"val": ..., "test": ...}: scored only; the test split is never fitted on
    augment: PixelAugment


def _stratified(split: ImageSet, size) -> ImageSet:
    """A fixed stratified subset (seed 0, the same for every arm), or the whole split."""
    from . import data
    if size == "all" or size >= len(split):
        return split
    return split.take(data.stratified_indices(split.labels.numpy(), size, seed=0))


def _splits(dataset: str, val_size: int, allow_download: bool):
    """(splits, pool, validation), loaded once per process: the classifier cells' context (`cells.context`)."""
    from . import cells
    ctx = cells.context(dataset, val_size, allow_download)
    return ctx.splits, ctx.pool, ctx.val


@functools.lru_cache(maxsize=4)
def multiview_inputs(dataset: str, val_size: int, probe_size, eval_size,
                     allow_download: bool = False) -> MultiviewInputs:
    """Load (once per process) the data a multiview cell needs; the notebook calls it too, sharing the cache."""
    splits, pool, val = _splits(dataset, val_size, allow_download)
    return MultiviewInputs(tuple(splits.image_shape), splits.num_classes, tuple(splits.classes), pool,
                           _stratified(pool, probe_size),
                           {"val": _stratified(val, eval_size), "test": _stratified(splits.test, eval_size)},
                           PixelAugment.for_dataset(dataset, splits.image_shape[-1]))


@functools.lru_cache(maxsize=4)
def views_generator(name: str, dataset: str, val_size: int, steps: int, seed: int, device: str = "auto",
                    allow_download: bool = False, progress: bool = False):
    """The generator the notebooks share (`generators.fit_on_subset` on the whole pool: the generators notebook's
    cached model), loaded once per process and moved to where the encoder trains (views decode there)."""
    from . import generators
    pool = _splits(dataset, val_size, allow_download)[1]
    # a pretrained generator: its weights from $SYNTHSTUDY_PRETRAINED/<name>, or downloaded with consent
    config = {"allow_download": bool(allow_download)} if generators.is_pretrained(name) else {}
    gen, _ = generators.fit_on_subset(name, pool, dataset=dataset, n="all", subset_seed=0, steps=steps, seed=seed,
                                      config=config, device=device, progress=progress)
    return gen.to(train.resolve_device(device))


def multiview_cell(key: dict, cell_dir=None, device: str = "auto", progress: bool = False,
                   allow_download: bool = False) -> dict:
    """Train (unless source='none') and score one encoder described by `key` (`multiview_key`); returns its metrics.

    Module-level and driven by the key alone (plus where to run: device, progress bars, download consent), so
    `runs.Run.grid` can pass `functools.partial(multiview_cell, device=...)` to a subprocess or a Slurm job. The
    data and the generator are loaded from the key and cached per process.
    """
    inputs = multiview_inputs(key["dataset"], key["val_size"], key["probe_size"], key["eval_size"], allow_download)
    encoder = create_encoder(key["model"], inputs.image_shape[0], inputs.image_shape[-1],
                             seed=key["seed"] + INIT_STRIDE * key.get("init", 0), num_classes=inputs.num_classes)
    out = {"train_seconds": 0.0, "pairs_per_s": float("nan"), "final_loss": float("nan")}
    if key["source"] != "none":
        gen = None
        if key["source"] == "synthetic":
            gen = views_generator(key["generator"], key["dataset"], key["val_size"], key["gen_steps"],
                                  key["gen_seed"], device, allow_download)
            gen = label_free(gen) if key["label_free"] else gen
        views = make_views(key["views"], real=inputs.pool if key["source"] == "real" else None, gen=gen,
                           sigma=key["sigma"] or 0.0, truncation=key["truncation"] or 0.0, anchors=key["anchors"],
                           augment=inputs.augment, seed=key["seed"], noise=key["noise"] or "additive")
        cfg = ContrastiveConfig(method=key["method"], steps=key["steps"], batch_size=key["batch_size"], lr=key["lr"],
                                temperature=key["temperature"], seed=key["seed"], device=device, progress=progress)
        result = fit(encoder, views, cfg)
        encoder = result.encoder
        out.update(train_seconds=result.seconds, pairs_per_s=result.pairs_per_s, final_loss=result.losses[-1][1])
    start = time.perf_counter()
    scores, _ = evaluate(encoder, inputs.probe_set, inputs.score_sets, knn_k=key["knn_k"])
    return {**scores, **out, "eval_seconds": time.perf_counter() - start}
