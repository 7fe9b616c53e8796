"""`cgan`: a DCGAN-style class-conditional GAN built to train on small data on a CPU.

Generator: (z, class embedding) -> linear -> a start x start map (4x4, or 7x7 for 28x28), then per doubling a
class-conditional BatchNorm (per-class gain and bias), ReLU, nearest 2x upsampling and a 3x3 conv; a last conv and
tanh give the image. Discriminator: 3x3 / strided 4x4 convs with spectral normalisation, LeakyReLU, global sum
pooling and a projection head, D(x, y) = w.h(x) + embed(y).h(x). Supported sizes: 8x8, 16x16, 28x28, 32x32.

Training recipe (each piece is there for small N on a CPU):
- hinge loss, Adam(betas=(0.0, 0.9)), one D step per G step by default (`n_dis`);
- DiffAugment-style differentiable augmentation of real *and* fake images before D (`augment`: random
  translation by up to 1/8 of the size, cutout of a square half the size), so D cannot memorise a small set;
- an exponential moving average (EMA) of the generator's weights, started only after `ema_start` of the steps
  (averaging the early, fast-changing weights was measured to hurt), with the decay warmed up so that short runs
  average their later steps, then BatchNorm statistics recomputed for the averaged weights; sampling always uses
  the EMA generator in eval mode, so a sample depends only on (z, label), never on the rest of its batch;
- against within-class collapse (issue 17: recall 0.03 at the quick budget, the EMA and the live generator alike):
  `r1_gamma`, a zero-centred gradient penalty on real images (R1, lazily every `R1_EVERY` D steps);
  `mode_seeking`, the MSGAN regulariser (two latents of one class must give different images); `minibatch_std`,
  a minibatch-statistics feature map in D (a batch of near-identical fakes is then easy to spot); `latent_norms`
  and `aux_class` (third screen below). All off by default, measured (quick budget, 1200 steps on the pool,
  5,000 samples vs 5,000 validation images in the domain feature space; CAS: 150-step classifier on a stream,
  scored on validation, classifier seeds 0-2):
    defaults:                         FID 8.2, recall 0.03, precision 0.72, coverage 0.16, CAS 68.1/66.3/67.1%
    r1_gamma=1, lr_d=1e-4:            FID 10.5, recall 0.03, precision 0.72, coverage 0.12
    minibatch_std, mode_seeking=1:    FID 11.7, recall 0.39, precision 0.64, coverage 0.14, CAS 58.6/60.7/59.8%
  so the last one lifts recall past 0.3 but costs 7 CAS points, and coverage does not rise with it: the samples
  spread out rather than cover more of each class; the defaults stay until a setting gains both.
  Rescreened with the profile's CAS classifier (`scripts/generator_curves.py --profile quick --steps 1200
  --cas-seeds 0`: quick's 2,500-step classifier on a pool as large as the real one, validation, seed 0; 2-core VM):
    defaults:                         FID 8.88, recall 0.04, precision 0.73, CAS 67.3%
    minibatch_std, mode_seeking=0.3:  FID 8.93, recall 0.28, precision 0.65, CAS 63.5%
    mode_seeking=1:                   FID 12.96, recall 0.27, precision 0.62, CAS 61.4%
    lr_g=1e-4, lr_d=4e-4 (TTUR):      FID 12.35, recall 0.02, precision 0.59, CAS 62.9%
  Every setting that lifts recall (0.27-0.39) lowers precision and costs 4-7 CAS points (one seed each, so a
  direction, not a test): on this budget recall and usefulness as training data pull apart, and the defaults keep
  the more useful generator. With the defaults, training longer lifts recall only slowly (paper profile, whole pool,
  one fit per budget on an H200, results/paper/generator_curves): recall 0.01 / 0.03 / 0.09 and FID 10.6 / 6.07 /
  4.60 at 1,000 / 3,000 / 6,000 steps, so 0.3 is not in reach at 2x the paper's budget without the settings above
  (paper's feature space is its own 6,000-step extractor's, quick's a 3,000-step one: the recalls compare loosely).
  Third screen (same script and budget, validation, classifier seed 0; a 2-core AMD EPYC VM, 2026-11-27, whose
  defaults read FID 9.45, recall 0.02, CAS 66.4%), after the causes the issue names. Not the discriminator's view
  or strength: augment="translation" recall 0.02, augment="none" 0.04, n_dis=2 0.04 (FID 6.73); not the
  generator's size: width=24 0.03; not where z enters: `latent_norms` (z adds to every conditional BatchNorm,
  BigGAN's skip-z) 0.03, with minibatch_std 0.02, though latent_norms gave the best CAS, 70.6% (FID 8.45; measured
  with its weight drawn as an nn.Linear before zeroing, since replaced by a zero Parameter). Only the mode-seeking
  term moves recall, and its samples show why it costs CAS: a class's images spread, partly into other classes'
  shapes (bags drawn as shoes; latent_norms + mode_seeking=1: recall 0.28, CAS 58.5%). The auxiliary class head
  (`aux_class`: AC-GAN's head on D, learning the classes on real images only; G is asked to be recognised as its
  class) holds the class:
    mode_seeking=1, aux_class=1:      FID 9.34, recall 0.23, precision 0.61, CAS 68.7%
    mode_seeking=2, aux_class=1:      FID 12.96, recall 0.25, precision 0.55, CAS 67.1%
  so the class head wins back the CAS that mode seeking costs (68.7% against the defaults' 66.4%, one seed each: a
  direction), but recall settles at 0.23-0.25 on this budget, short of 0.3 (with minibatch_std too: 0.25, CAS
  69.8%). At paper's budget (3,000 steps, paper's feature space, same VM) mode_seeking=1 with aux_class=1 reads FID
  6.64, recall 0.26, precision 0.65, coverage 0.22, against the defaults' (H200 fit) 6.07 / 0.03 / 0.87 / 0.29.
  Recall is the wrong gauge of collapse on its own (`scripts/prdc_controls.py`): it counts validation images inside
  some sample's k-NN ball, and scattered samples have large balls. Scaling that fit's latents by 1.25 at sampling, a
  spread that adds no mode, lifts recall 0.26 -> 0.33 while coverage (validation images whose own ball holds a
  sample) falls 0.22 -> 0.19 and FID rises to 8.47; real held-out images read recall 0.92, coverage 0.97. So mode
  seeking's recall is largely spread, not cover: its coverage is below the defaults'. What does raise coverage is
  training: the defaults' 0.13 / 0.29 / 0.39 at 1,000 / 3,000 / 6,000 steps (the flow: 0.68 at 4,000).
  In quick's feature space at 3,000 steps the same fit reads FID 5.77, recall 0.29, coverage 0.26, validation CAS
  73.7% (quick's 2,500-step classifier, seeds 0-4: 73.70 / 73.48 / 73.92 / 74.32 / 72.84%); the defaults
  refitted there on this VM read FID 6.13, recall 0.04, coverage 0.29, CAS 69.9 / 69.6 / 70.8%: paired on
  classifier seeds 0-2, mode_seeking + aux_class scores +3.61 [+2.64, +4.59] pts, higher (p_Holm 0.004; one fit per
  arm, so the fits' own spread is not counted). So the setting makes better training data, with recall 0.26-0.29
  (short of 0.3) and coverage at or below the defaults' (paper's space, this VM's defaults fit: 0.27 against 0.22).
  The defaults stay until a paper-budget check with several training seeds; meanwhile `zoo_overrides` can set them.
  Twice paper's budget (6,000 steps, paper's space, CPU fit on the 2-core AMD EPYC VM, 885 s): mode_seeking=1 +
  aux_class=1 reads FID 4.81, recall 0.27, precision 0.67, coverage 0.34, against the defaults' (H200) 4.60 / 0.09
  / 0.83 / 0.39: doubling the budget lifts its coverage (0.22 -> 0.34) but hardly its recall (0.26 -> 0.27), so
  recall 0.3 is not a matter of one more doubling for it (`analysis_generators.collapse_readings`: short of recall).
  The defaults at 4x paper's budget (12,000 steps, same VM, 1,884 s): FID 2.75, recall 0.13, precision 0.90,
  coverage 0.55 (from 4.60 / 0.09 / 0.83 / 0.39 at 6,000): the family is far from its plateau at paper's 3,000
  steps, and its recall grows about 1.5x per doubling there, so 0.3 looked about two more doublings away (48,000
  steps: a GPU job, or ~2 h on 2 cores; it was not, below). At 8x (24,000 steps, same VM, 4,114 s): FID 1.84, recall
  0.23, precision 0.89, coverage 0.63, validation CAS 78.6% (paper's classifier, seed 0; the flow at 32,000 steps
  reads 87.9%): recall grew 1.7x for that doubling and is still short of 0.3. Its FID lies between the flow's at 8,000
  and 16,000 steps (2.06 and 1.60, CAS 85.8 and 87.1%), its CAS 7-8 points below both: FID alone does not rank these
  families as training data (one fit and one classifier seed each: a direction).
  At 16x (48,000 steps, same VM, ~2 h of fit at 6.3-6.9 steps/s, resumed once from its snapshot): FID 1.48, recall
  0.24, precision 0.93, coverage 0.68, validation CAS 81.0% (seed 0). Recall grew 1.5x / 1.7x over the doublings to
  12,000 and 24,000 steps, then 1.06x (0.23 -> 0.24) over this one, while FID, coverage and CAS still improve: the
  defaults' recall has levelled off short of 0.3 (one fit per budget: a direction, not a test), so more budget is not
  the route to it; the settings that lift recall (mode seeking) do it by spreading samples rather than covering more
  (coverage below the defaults', above). Paper's generators notebook trains this family at 48,000 steps
  (`zoo_overrides`), its best measured budget.

Cost (counted, not timed): at 28x28 and width 32 one training step costs about 0.28 G multiply-adds per image
(G ~30 M and D ~20 M per forward; the D step runs D on real + fake, the G step back-propagates through D), so
batch 64 is ~18 G MACs per step. Time scales with width^2, so the default width is 16 (~4.5 G MACs per step at
batch 64): width 32 is for a GPU or a long CPU budget. With augmentation on, the label is picked up more slowly
early in training (on digits at 600 steps) than without: it pays off on small N over long runs.

Sampling: z ~ N(0, I), optionally truncated (each |z_i| > truncation is redrawn): set `gen.truncation = 0.8`
or pass `truncation=` to `sample_latents` / `sample`. Truncation trades diversity for fidelity.

    >>> gen = generators.create("cgan", (1, 28, 28), 10, width=32)
    >>> gen.fit(train, steps=5000, seed=0)
    >>> gen.sample(torch.arange(10), rng=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..progress import tqdm
from ..sources import ImageSetSource
from ..train import LossLog, check_positive
from .base import Generator, check_number, images_to_unit, size_plan

AUGMENTS = ("none", "translation", "cutout", "translation_cutout")


# Spectral normalisation: PyTorch's hook-based `nn.utils.spectral_norm` (one power iteration per training forward).
# Not the newer `parametrizations.spectral_norm`: parametrized modules cannot be pickled, and runs.cached saves
# the whole generator object with torch.save.
sn = nn.utils.spectral_norm


# ---------------------------------------------------------------- networks
class CondBatchNorm2d(nn.Module):
    """BatchNorm without its own affine; a per-class gain (initialised to 1) and bias (0) instead. With
    `latent_dim` > 0 the latent z adds a linear term to both (BigGAN's skip-z, Brock et al. 2019), so z reaches every
    scale instead of only the first layer; the terms start at zero, so at initialisation it is the per-class norm."""

    def __init__(self, channels: int, num_classes: int, latent_dim: int = 0):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)
        # a zero-initialised weight (not an nn.Linear, whose random init would shift every later layer's draw:
        # with and without the option, the other layers then start from the same weights)
        self.from_latent = nn.Parameter(torch.zeros(2 * channels, latent_dim)) if latent_dim else None

    def forward(self, x, y, z=None):
        gain, bias = self.gain(y), self.bias(y)
        from_latent = getattr(self, "from_latent", None)     # absent in generators cached before the option existed
        if from_latent is not None:
            dg, db = F.linear(z, from_latent).chunk(2, dim=1)
            gain, bias = gain + dg, bias + db
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]


class GeneratorNet(nn.Module):
    def __init__(self, latent_dim: int, num_classes: int, channels: int, width: int, start: int, n_up: int,
                 embed_dim: int, latent_norms: bool = False):
        super().__init__()
        c = width * 2 ** n_up
        self.start, self.c0 = start, c
        # the class enters twice: as an embedding next to z (a strong path: the first layer maps it to a whole
        # feature map) and through the conditional BatchNorms (per-channel gains and biases at every scale);
        # with the BatchNorms alone the class signal grew too slowly (digits, width 16: samples were classified
        # at chance after 1500 steps; with the embedding, 58% right after 600)
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.fc = nn.Linear(latent_dim + embed_dim, c * start * start)
        self.norms, self.convs = nn.ModuleList(), nn.ModuleList()
        z_in_norms = latent_dim if latent_norms else 0
        for _ in range(n_up):
            self.norms.append(CondBatchNorm2d(c, num_classes, z_in_norms))
            self.convs.append(nn.Conv2d(c, c // 2, 3, padding=1))
            c //= 2
        self.norm_out = CondBatchNorm2d(c, num_classes, z_in_norms)
        self.conv_out = nn.Conv2d(c, channels, 3, padding=1)

    def forward(self, z, y):
        h = self.fc(torch.cat([z, self.embed(y)], 1)).view(len(z), self.c0, self.start, self.start)
        for norm, conv in zip(self.norms, self.convs):
            h = conv(F.interpolate(F.relu(norm(h, y, z)), scale_factor=2, mode="nearest"))
        return torch.tanh(self.conv_out(F.relu(self.norm_out(h, y, z))))     # in [-1, 1]


class MinibatchStd(nn.Module):
    """Appends one feature map: the standard deviation of each feature over a group of `group` consecutive images,
    averaged over features (StyleGAN's minibatch statistics). A generator that draws the same image for every z
    gives groups with a small spread, which the discriminator can then see and punish. Groups are consecutive
    images, so a batch [real; fake] with a size divisible by the group never mixes real and fake in a group."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x):
        b, c, h, w = x.shape
        g = math.gcd(b, self.group)
        spread = x.view(b // g, g, c, h, w).var(dim=1, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
        return torch.cat([x, spread.repeat_interleave(g)[:, None, None, None].expand(b, 1, h, w)], dim=1)


class Discriminator(nn.Module):
    def __init__(self, num_classes: int, channels: int, width: int, n_down: int, minibatch_std: bool = False,
                 aux_classifier: bool = False):
        super().__init__()
        layers, c = [sn(nn.Conv2d(channels, width, 3, padding=1)), nn.LeakyReLU(0.1)], width
        for _ in range(n_down):
            layers += [sn(nn.Conv2d(c, 2 * c, 4, stride=2, padding=1)), nn.LeakyReLU(0.1)]
            c *= 2
        if minibatch_std:
            layers.append(MinibatchStd())
        layers += [sn(nn.Conv2d(c + int(minibatch_std), c, 3, padding=1)), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        self.linear = sn(nn.Linear(c, 1))
        self.embed = sn(nn.Embedding(num_classes, c))
        # an auxiliary class head on the same features (AC-GAN's), only where `aux_class` > 0: in the default
        # discriminator it does not exist, so earlier cached generators keep their state dicts
        self.classify = sn(nn.Linear(c, num_classes)) if aux_classifier else None

    def forward(self, x, y):
        """The projection discriminator's score, D(x, y) = w.h(x) + embed(y).h(x), and the class head's logits
        (None without the head)."""
        h = self.body(x).sum(dim=(2, 3))
        score = self.linear(h).squeeze(1) + (self.embed(y) * h).sum(1)
        classify = getattr(self, "classify", None)            # absent in discriminators pickled before the head
        return score, (classify(h) if classify is not None else None)


# ---------------------------------------------------------------- augmentation
def diff_augment(x: torch.Tensor, policy: str, rng: torch.Generator, translation: float = 0.125,
                 cutout: float = 0.5) -> torch.Tensor:
    """Differentiable augmentation of images in [-1, 1] (gradients reach G through it), fresh per sample.

    translation: shift by up to `translation` * size px, the uncovered border filled with -1 (black);
    cutout: a square of side `cutout` * size, at a random place (may hang over the edge), set to 0.
    """
    if policy == "none":
        return x
    b, _, h, w = x.shape
    dev = x.device
    if "translation" in policy:
        s = int(h * translation + 0.5)
        if s > 0:
            padded = F.pad(x, (s, s, s, s), value=-1.0)
            dy = torch.randint(0, 2 * s + 1, (b,), generator=rng).to(dev)
            dx = torch.randint(0, 2 * s + 1, (b,), generator=rng).to(dev)
            rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]       # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]       # (B, 1, 1, W)
            batch = torch.arange(b, device=dev)[:, None, None, None]
            chans = torch.arange(x.shape[1], device=dev)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
    if "cutout" in policy:
        sh, sw = int(h * cutout + 0.5), int(w * cutout + 0.5)
        oy = (torch.randint(0, h + (1 - sh % 2), (b,), generator=rng) - sh // 2).to(dev)
        ox = (torch.randint(0, w + (1 - sw % 2), (b,), generator=rng) - sw // 2).to(dev)
        ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
        in_y = (ys[None] >= oy[:, None]) & (ys[None] < oy[:, None] + sh)
        in_x = (xs[None] >= ox[:, None]) & (xs[None] < ox[:, None] + sw)
        keep = ~(in_y[:, :, None] & in_x[:, None, :])
        x = x * keep[:, None].to(x.dtype)
    return x


R1_EVERY = 4     # D steps between R1 penalties (lazy regularisation, StyleGAN2); the penalty is weighted up by it


def r1_penalty(out_real: torch.Tensor, real_in: torch.Tensor) -> torch.Tensor:
    """Zero-centred gradient penalty on real data (R1, Mescheder et al. 2018): E ||grad_x D(x)||^2, differentiable
    (the D step back-propagates through it). `real_in` must require grad and `out_real` must come from it."""
    (grad,) = torch.autograd.grad(out_real.sum(), real_in, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


def mode_seeking_loss(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mode-seeking regulariser (MSGAN, Mao et al. 2019): 1 / (mean |G(z1) - G(z2)| / mean |z1 - z2|) over pairs
    (i, i + B // 2), which the caller gives the same class, so minimising it spreads a class's images over z."""
    half = len(z) // 2
    image_gap = (fake[:half] - fake[half:2 * half]).abs().flatten(1).mean(1)
    latent_gap = (z[:half] - z[half:2 * half]).abs().mean(1)
    return 1.0 / ((image_gap / latent_gap).mean() + 1e-5)


def discriminator_objective(out_real, out_fake, logits, labels, aux: float, r1_term=None):
    """The D step's loss: hinge on real and fake scores, plus `aux` x the class head's cross-entropy on the *real*
    half of the batch (a head fitted to fakes would reward their errors), plus the weighted R1 term where given.
    Returns (hinge loss, class cross-entropy or 0, total)."""
    d_loss = F.relu(1 - out_real).mean() + F.relu(1 + out_fake).mean()
    total = d_loss
    class_ce = torch.zeros((), device=out_real.device)
    if aux > 0:
        class_ce = F.cross_entropy(logits[:len(out_real)], labels)
        total = total + aux * class_ce
    if r1_term is not None:
        total = total + r1_term
    return d_loss, class_ce.detach(), total


def generator_objective(out_fake, logits, labels, aux: float, fake, z, mode_seeking: float):
    """The G step's loss: the hinge generator term, plus `aux` x the class head's cross-entropy on the fakes (they
    must be recognised as their class, which holds the class where mode seeking spreads a class's images), plus
    `mode_seeking` x the MSGAN term. Returns (hinge term, total)."""
    g_loss = -out_fake.mean()
    total = g_loss
    if aux > 0:
        total = total + aux * F.cross_entropy(logits, labels)
    if mode_seeking > 0:
        total = total + mode_seeking * mode_seeking_loss(fake, z)
    return g_loss, total


def truncated_normal(shape, truncation: float | None, rng: torch.Generator | None) -> torch.Tensor:
    """Standard normal draws; with `truncation`, every entry with |z| > truncation is redrawn until none is."""
    z = torch.randn(shape, generator=rng)
    if truncation is None:
        return z
    while True:
        bad = z.abs() > truncation
        n = int(bad.sum())
        if n == 0:
            return z
        z[bad] = torch.randn(n, generator=rng)


# ---------------------------------------------------------------- the generator family
class CGAN(Generator):
    family = "cgan"
    # fits past paper's budget take hours on 2 cores (48,000 steps: ~2 h on the AMD EPYC VM, paper's zoo_overrides):
    # a killed one continues from its snapshot (generators, discriminator, EMA, both Adams, the data queue)
    resumable = True

    def __init__(self, image_shape, num_classes: int, latent_dim: int = 64, width: int = 16, embed_dim: int = 32,
                 lr_g: float = 2e-4, lr_d: float = 2e-4, beta1: float = 0.0, beta2: float = 0.9, n_dis: int = 1,
                 batch_size: int = 64, augment: str = "translation_cutout", ema_decay: float = 0.999,
                 ema_start: float = 0.5, bn_batches: int = 16, r1_gamma: float = 0.0, mode_seeking: float = 0.0,
                 minibatch_std: bool = False, latent_norms: bool = False, aux_class: float = 0.0, log_every: int = 50):
        for name, value in (("latent_dim", latent_dim), ("width", width), ("embed_dim", embed_dim), ("n_dis", n_dis),
                            ("batch_size", batch_size), ("bn_batches", bn_batches), ("log_every", log_every)):
            check_positive(name, value)
        for name, value in (("lr_g", lr_g), ("lr_d", lr_d)):
            check_number(name, value, 0.0, math.inf, low_open=True, high_open=True)
        for name, value in (("beta1", beta1), ("beta2", beta2), ("ema_decay", ema_decay)):
            check_number(name, value, 0.0, 1.0, high_open=True)
        check_number("ema_start", ema_start, 0.0, 1.0, high_open=True)
        r1_gamma = check_number("r1_gamma", r1_gamma, 0.0, math.inf, high_open=True)
        # stored as floats, so that 1 and 1.0 give one cache key (config.generator_config reads 1 as 1.0 too)
        mode_seeking = check_number("mode_seeking", mode_seeking, 0.0, math.inf, high_open=True)
        aux_class = check_number("aux_class", aux_class, 0.0, math.inf, high_open=True)
        for name, value in (("minibatch_std", minibatch_std), ("latent_norms", latent_norms)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}={value!r} must be True or False")
        if augment not in AUGMENTS:
            raise ValueError(f"augment={augment!r} is unknown; allowed values: {', '.join(AUGMENTS)}")
        super().__init__(image_shape, num_classes, dict(
            latent_dim=latent_dim, width=width, embed_dim=embed_dim, lr_g=lr_g, lr_d=lr_d, beta1=beta1, beta2=beta2,
            n_dis=n_dis, batch_size=batch_size, augment=augment, ema_decay=ema_decay, ema_start=ema_start,
            bn_batches=bn_batches, r1_gamma=r1_gamma, mode_seeking=mode_seeking, minibatch_std=minibatch_std,
            **({"latent_norms": True} if latent_norms else {}), **({"aux_class": aux_class} if aux_class else {}),
            log_every=log_every))
        self.start, self.n_up = size_plan(self.image_shape)   # refuses unsupported sizes before building
        self.latent_dim = latent_dim
        self.truncation: float | None = None                  # a sampling setting, not part of the fitted model
        self._build()

    def _build(self) -> None:
        cfg, c = self.config, self.image_shape[0]
        self.g = GeneratorNet(cfg["latent_dim"], self.num_classes, c, cfg["width"], self.start, self.n_up,
                              cfg["embed_dim"], cfg.get("latent_norms", False))
        self.d = Discriminator(self.num_classes, c, cfg["width"], self.n_up, cfg["minibatch_std"],
                               cfg.get("aux_class", 0.0) > 0)
        self.g_ema = copy.deepcopy(self.g).eval()
        for p in self.g_ema.parameters():
            p.requires_grad_(False)

    def sampling_state_dict(self) -> dict:
        return self.g_ema.state_dict()

    def _fit(self, train, steps, batch_size, device, rng, progress) -> dict:
        cfg = self.config
        source = ImageSetSource(train)
        betas = (cfg["beta1"], cfg["beta2"])
        opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg["lr_g"], betas=betas)
        opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg["lr_d"], betas=betas)
        ema_from = int(cfg["ema_start"] * steps)
        aux = cfg.get("aux_class", 0.0)
        d_steps = 0
        r1 = class_ce = torch.zeros((), device=device)
        self.g.train()
        self.d.train()
        # A resumed fit (`self.checkpoint.state`: weights and random streams already loaded by `fit`) continues at
        # the snapshot's step with its optimizers, loss log, data queue, D-step count (the lazy R1's phase) and the
        # last R1 term (logged between its updates), so it ends bit-identical to an unbroken fit.
        checkpoint = self.checkpoint
        state = checkpoint.state or {}
        first = state.get("step", 0)
        bar = tqdm(range(first, steps), initial=first, total=steps, disable=not progress, desc="cgan fit",
                   leave=False, mininterval=1.0)
        log = LossLog(cfg["log_every"], steps, device, f"lower lr_g={cfg['lr_g']} / lr_d={cfg['lr_d']}",
                      terms=("d_loss", "g_loss", "d_real", "d_fake", "r1", "class_ce"), what="cgan losses", bar=bar,
                      postfix=("d_loss", "g_loss"))
        if state:
            opt_g.load_state_dict(state["optimizer_g"])
            opt_d.load_state_dict(state["optimizer_d"])
            log.load_state_dict(state["log"])
            source._queue = state["source_queue"].to(source._queue.device)
            d_steps = state["d_steps"]
            r1 = state["r1"].to(device)
        for step in bar:
            # --- discriminator: hinge loss on augmented real and fake images, one forward for both
            for _ in range(cfg["n_dis"]):
                images, labels = source.next_batch(batch_size, rng)
                real = images_to_unit(images).mul(2).sub(1)
                z = torch.randn(batch_size, self.latent_dim, generator=rng).to(device)
                with torch.no_grad():
                    fake = self.g(z, labels)
                real_in = diff_augment(real, cfg["augment"], rng)
                # lazy R1 (as in StyleGAN2): the penalty every R1_EVERY D steps, weighted by R1_EVERY
                with_r1 = cfg["r1_gamma"] > 0 and d_steps % R1_EVERY == 0
                real_in.requires_grad_(with_r1)
                out, logits = self.d(torch.cat([real_in, diff_augment(fake, cfg["augment"], rng)]),
                                     torch.cat([labels, labels]))
                out_real, out_fake = out[:batch_size], out[batch_size:]
                if with_r1:
                    r1 = r1_penalty(out_real, real_in)
                d_loss, class_ce, total = discriminator_objective(
                    out_real, out_fake, logits, labels, aux, 0.5 * cfg["r1_gamma"] * R1_EVERY * r1 if with_r1 else None)
                opt_d.zero_grad(set_to_none=True)
                total.backward()
                opt_d.step()
                d_steps += 1
            # --- generator: fakes of the real batch's classes (keeps the training class balance)
            self.d.requires_grad_(False)     # no weight gradients for D here: only the G step is taken
            z = torch.randn(batch_size, self.latent_dim, generator=rng).to(device)
            if cfg["mode_seeking"] > 0:              # pairs (i, i + half) share a class: see mode_seeking_loss
                half = batch_size // 2
                labels = torch.cat([labels[:half], labels[:half], labels[2 * half:]])
            fake = self.g(z, labels)
            out_g, logits = self.d(diff_augment(fake, cfg["augment"], rng), labels)
            g_loss, total = generator_objective(out_g, logits, labels, aux, fake, z, cfg["mode_seeking"])
            opt_g.zero_grad(set_to_none=True)
            total.backward()
            opt_g.step()
            self.d.requires_grad_(True)
            self._update_ema(step, ema_from)

            log.add(step, d_loss, g_loss, out_real.detach().mean(), out_fake.detach().mean(), r1, class_ce)
            if checkpoint.due():
                checkpoint.save(stage="gan", step=step + 1, optimizer_g=opt_g.state_dict(),
                                optimizer_d=opt_d.state_dict(), log=log.state_dict(), source_queue=source._queue.cpu(),
                                d_steps=d_steps, r1=r1.detach().cpu())
        self._recompute_bn_stats(train.labels, batch_size, device, rng)
        self.g.eval()
        curves = log.series
        if aux == 0:                 # a default fit's history keeps the keys it had before the class head existed
            curves.pop("class_ce")
        return {"losses": curves["d_loss"], **curves, "r1": curves["r1"] if cfg["r1_gamma"] > 0 else [],
                "ema_from_step": ema_from}

    @torch.no_grad()
    def _update_ema(self, step: int, ema_from: int) -> None:
        if step < ema_from:
            return
        if step == ema_from:               # the average starts from the current weights, not the early ones
            self.g_ema.load_state_dict(self.g.state_dict())
            return
        # TF-style decay warm-up: with n updates so far the decay is at most (1 + n) / (10 + n), so in a short run
        # the average covers the steps since `ema_from` instead of staying near the weights at `ema_from`
        n = step - ema_from
        weight = 1 - min(self.config["ema_decay"], (1 + n) / (10 + n))
        for p_ema, p in zip(self.g_ema.parameters(), self.g.parameters()):
            p_ema.lerp_(p, weight)
        for b_ema, b in zip(self.g_ema.buffers(), self.g.buffers()):
            b_ema.copy_(b)

    @torch.no_grad()
    def _recompute_bn_stats(self, train_labels, batch_size, device, rng) -> None:
        """BatchNorm statistics for the averaged weights (the live generator's would not match them):
        cumulative means over `bn_batches` batches of fresh samples, labels drawn from the training labels."""
        norms = [m for m in self.g_ema.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None                     # None = cumulative average over the batches below
        self.g_ema.train()
        for _ in range(self.config["bn_batches"]):
            idx = torch.randint(0, len(train_labels), (batch_size,), generator=rng).to(device)
            z = torch.randn(batch_size, self.latent_dim, generator=rng).to(device)
            self.g_ema(z, train_labels[idx])
        for m in norms:
            m.momentum = 0.1
        self.g_ema.eval()

    def sample_latents(self, labels, rng=None, truncation: float | None = None) -> torch.Tensor:
        labels = self.check_labels(labels)
        t = self.truncation if truncation is None else truncation
        if t is not None:
            check_number("truncation", t, 0.0, math.inf, low_open=True)
        return truncated_normal((len(labels), self.latent_dim), t, rng)

    def sample(self, labels, rng=None, truncation: float | None = None) -> torch.Tensor:
        labels = self.check_labels(labels)
        return self.decode(self.sample_latents(labels, rng, truncation), labels)

    def _decode(self, z, labels):
        self.g_ema.eval()
        return (self.g_ema(z, labels) + 1) / 2
