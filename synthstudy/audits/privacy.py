"""Privacy audit: how close do a generator's samples come to the very images it was trained on?

Every measurement is made in pixel space (images in [0, 1], flattened, Euclidean distance) and, when an `embed`
function is given, in the domain feature space (`metrics.domain_extractor(...).embed`: the penultimate layer of
the study's classifier trained on real images, where two images are close when that classifier sees them alike;
a shifted copy is far in pixels but near in features).

1. Nearest-neighbour distances. For every synthetic sample, `d_train`: the distance to its nearest training
   image (the generator's own training set, the "members"), and `d_heldout`: the distance to its nearest
   held-out real image (real images from the same distribution, never seen by the generator: the
   "non-members"). A generator that generalises puts its samples as near unseen real images as seen ones, so
   the ratio d_train / d_heldout spreads around 1 (half the samples below 1); a copying one puts them on top of
   training images (ratios near 0). Distances shrink as the reference set grows (more candidates, nearer
   neighbours), so the ratio is taken between equally large sets: when the training set is the larger one, the
   sample's distance to an equally large random part of it.
2. Copy rate: the share of samples with d_train below a threshold τ, the `copy_quantile` quantile (5% by default)
   of the training images' leave-one-out nearest-neighbour distances (a training image to the *other* training
   images; for a large set, of up to `loo_queries` random training images). A fresh image from the data
   distribution has a nearest-training-image distance distributed like those leave-one-out distances, so a
   generator that samples the distribution without copying has a copy rate of about `copy_quantile`, and one that
   hands back training images has 1. Every sample is checked against the *whole* training set.
3. Copy excess: the copy rate minus the same rate against the held-out images, P(d_train < τ_train) -
   P(d_heldout < τ_heldout), each τ the `copy_quantile` quantile of its own set's real-to-real leave-one-out
   distances (equal sets in the N sweep, so the two τ agree up to noise; the whole pool against the smaller
   validation split, where each set's own τ keeps both rates calibrated at `copy_quantile`). A copy rate alone
   also counts smooth, mean-like samples, which lie near *every* real image (measured: PCA at N=100, 31.9% in
   pixel space vs 3.6% in feature space); they are as near the held-out images, so their excess is about 0. A
   generator that copies has an excess near 1 - `copy_quantile`.
4. Membership inference, the distance attack (Hilprecht et al. 2019; Chen et al. 2020, "GAN-Leaks"): holding the
   synthetic samples and a real image, score the image by -(distance to its nearest sample). The ROC AUC of that
   score for telling members (every training image) from non-members (every held-out image): 0.5 means the
   samples reveal nothing about who was in the training set. Its ceiling depends on how many samples S the
   attacker holds per training image: even a generator that returns random training images hits only a share
   1 - exp(-S/N) of them, so it reaches an AUC of about 0.5 + (1 - exp(-S/N)) / 2 (`copier_auc`). With S = 3N
   that is 0.975; with 2,000 samples of a generator trained on 55,000 images, 0.52: such an AUC says nothing.
   The notebook therefore measures the ceiling in the same setting (the `Memoriser` below, same N, S, sets and
   space) and reports an AUC only where that ceiling reaches 0.9.
5. The positive control, `Memoriser`: a planted "generator" that returns its training images plus small pixel
   noise. Every audit must flag it, at every N; if one does not, that audit cannot detect what it claims.

    >>> from synthstudy.audits import privacy
    >>> held = privacy.heldout_indices(pool.labels, train_idx, seed=0)
    >>> x = privacy.generate(gen, privacy.labels_like(pool.labels[train_idx], 2000, seed=0), seed=0)
    >>> report = privacy.audit(x, train=pool.images[train_idx], heldout=pool.images[held])
    >>> report.summary()                 # copy_rate, mia_auc, ratio quantiles, the threshold used
    >>> privacy.audit(x, pool.images[train_idx], pool.images[held], embed=extractor.embed, space="feature")
    >>> privacy.plot_closest_pairs(x, pool.images[train_idx], privacy.closest_pairs(report, k=8))
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..generators.base import images_to_unit

SPACES = ("pixel", "feature")
# Synthetic samples per training image in a notebook cell: a generator that hands back its training images at
# random covers a share 1 - e^-3 = 95% of them with 3 samples per image, so the attack AUC can reach ~1 for a
# copier at every N, and the attacker holds the same number of samples per member whatever N is.
SAMPLES_PER_IMAGE = 3
# The planted memoriser's pixel noise (std, images in [0, 1]): enough that its samples are not bit-identical to the
# training images, small enough to stay a copy in both spaces. Measured on Fashion-MNIST at N=1,000 (3,000 samples,
# the quick domain extractor): feature-space copy rate 1.00 / 1.00 / 0.87 / 0.56 and attack AUC 0.972 / 0.973 /
# 0.961 / 0.913 at noise 0 / 0.01 / 0.02 / 0.03 (the classifier's features react to noise on the black background);
# in pixel space 0.01 moves an image by ≈ 0.28, against a copy threshold of ≈ 3.
MEMORISER_NOISE = 0.01


class Memoriser:
    """The positive control: a "generator" that memorised its training set. `sample(labels)` returns, for each
    label, a random training image of that class plus Gaussian pixel noise (`noise`, images in [0, 1]), clipped.

    Module-level and built from data alone (picklable), so grid cells build it from their key like any generator.
    """

    family = "memoriser"

    def __init__(self, train, num_classes: int | None = None, noise: float = MEMORISER_NOISE):
        if not 0 <= noise < 1:
            raise ValueError(f"noise={noise!r} must be in [0, 1) (pixel std, images in [0, 1])")
        self.images, self.labels = train.images, torch.as_tensor(train.labels).long()
        self.num_classes = int(num_classes or int(self.labels.max()) + 1)
        self.noise = float(noise)
        self._by_class = {int(c): torch.nonzero(self.labels == c).flatten() for c in torch.unique(self.labels)}

    def sample(self, labels, rng: torch.Generator | None = None) -> torch.Tensor:
        labels = torch.as_tensor(labels).long()
        missing = sorted(set(labels.tolist()) - set(self._by_class))
        if missing:
            raise ValueError(f"the memoriser holds no training image of class(es) {missing}")
        u = torch.rand(len(labels), generator=rng)
        picks = torch.stack([self._by_class[int(y)][int(v * len(self._by_class[int(y)]))]
                             for y, v in zip(labels, u)]) if len(labels) else torch.empty(0, dtype=torch.long)
        x = images_to_unit(self.images[picks])
        return (x + self.noise * torch.randn(x.shape, generator=rng)).clamp(0, 1)


# ---------------------------------------------------------------- inputs
def labels_like(labels, count: int, seed: int) -> torch.Tensor:
    """`count` labels with the class frequencies of `labels` (drawn with replacement, seeded): the samples of a
    generator are asked for in the proportions of the set it was trained on.

    Drawn with numpy's generator, not torch's: `generate(..., seed)` seeds a torch stream with the same number,
    and two torch streams from one seed would tie each label to its latent (a copier test caught exactly that).
    """
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count <= 0:
        raise ValueError(f"count={count!r} must be a positive integer")
    if len(labels) == 0:
        raise ValueError("labels is empty: there is no class frequency to copy")
    pick = np.random.default_rng(seed).integers(len(labels), size=int(count))
    return labels[torch.from_numpy(pick)]


@torch.no_grad()
def generate(generator, labels: torch.Tensor, seed: int, batch_size: int = 500) -> torch.Tensor:
    """`generator.sample(labels)` in batches (a conv decoder on 10,000 images at once would need gigabytes),
    from one seeded random stream: float (B, C, H, W) in [0, 1] on the CPU."""
    rng = torch.Generator().manual_seed(seed)
    return torch.cat([generator.sample(labels[i:i + batch_size], rng=rng)
                      for i in range(0, len(labels), batch_size)])


def heldout_indices(labels, train_indices, seed: int) -> np.ndarray:
    """Indices of held-out images (not in `train_indices`) with exactly the training subset's count per class.

    Same class counts, same size: distances to either set are then comparable. Sorted and seeded, like
    `data.stratified_indices`. Raises if some class has too few images outside the training subset.
    """
    labels = np.asarray(labels)
    train_indices = np.asarray(train_indices)
    if len(np.unique(train_indices)) != len(train_indices):
        raise ValueError("train_indices has repeated entries")
    outside = np.setdiff1d(np.arange(len(labels)), train_indices)
    rng = np.random.default_rng(seed)
    chosen = []
    for c, k in zip(*np.unique(labels[train_indices], return_counts=True)):
        candidates = outside[labels[outside] == c]
        if len(candidates) < k:
            raise ValueError(f"the held-out set needs {k} images of class {c} (as many as the training subset of "
                             f"n={len(train_indices)} holds) but only {len(candidates)} are outside it; "
                             f"allowed: n up to about half the pool")
        chosen.append(rng.choice(candidates, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


def as_features(images: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Images (uint8 [0, 255] or float [0, 1], (B, C, H, W)) -> (B, D) float32 CPU vectors: pixels in [0, 1]
    when `embed` is None, else `embed(images)` flattened. A 2-D input is taken as vectors already computed
    (e.g. the features of a whole pool, embedded once for many audits) and passed through as float32."""
    if images.ndim == 2:
        return images.float().cpu()
    if images.ndim != 4:
        raise ValueError(f"images must be (B, C, H, W) images or (B, D) vectors, got shape {tuple(images.shape)}")
    if embed is None:
        return images_to_unit(images).flatten(1).cpu()
    return torch.as_tensor(embed(images)).float().flatten(1).cpu()


# ---------------------------------------------------------------- distances
@torch.no_grad()
def cross_nearest(a: torch.Tensor, b: torch.Tensor, self_index: torch.Tensor | None = None, chunk: int = 2048,
                  device: str | torch.device = "cpu"):
    """Nearest neighbours both ways between two sets of vectors, in one chunked pass over the distance matrix.

    Returns (a_dist, a_index, b_dist): for each row of `a`, the Euclidean distance to its nearest row of `b` and
    that row's index; for each row of `b`, the distance to its nearest row of `a`. `self_index` (rows of `a` that
    are rows of `b`) gives, per row of `a`, the row of `b` that is the same image, skipped: leave-one-out
    neighbours (`torch.arange(len(a))` when a is b). Chunks keep memory at chunk x len(b) floats; `device` runs
    the distance matrix there (a GPU for the paper profile's large N), results come back on the CPU.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must be (n, D) and (m, D) with the same D, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if self_index is not None and (len(self_index) != len(a) or len(b) < 2):
        raise ValueError("self_index needs one entry per row of a, and b needs at least 2 rows")
    a, b = a.float().to(device), b.float().to(device)
    a_dist = torch.empty(len(a), device=device)
    a_index = torch.empty(len(a), dtype=torch.long, device=device)
    b_dist = torch.full((len(b),), math.inf, device=device)
    for i in range(0, len(a), chunk):
        d = torch.cdist(a[i:i + chunk], b)
        if self_index is not None:
            d[torch.arange(len(d), device=device), self_index[i:i + chunk].to(device)] = math.inf
        a_dist[i:i + chunk], a_index[i:i + chunk] = d.min(1)
        b_dist = torch.minimum(b_dist, d.min(0).values)
    return a_dist.cpu(), a_index.cpu(), b_dist.cpu()


def membership_auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    """ROC AUC of an attack score (higher = "was in the training set") for members vs non-members."""
    from sklearn.metrics import roc_auc_score
    y = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    return float(roc_auc_score(y, np.r_[np.asarray(member_scores), np.asarray(nonmember_scores)]))


def check_quantile(copy_quantile) -> float:
    if isinstance(copy_quantile, bool) or not isinstance(copy_quantile, (int, float)) or not 0 < copy_quantile <= 0.5:
        raise ValueError(f"copy_quantile={copy_quantile!r} must be a number in (0, 0.5] (a low quantile of the "
                         f"training images' leave-one-out nearest-neighbour distances, e.g. 0.05)")
    return float(copy_quantile)


def leave_one_out(train: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  loo_queries: int = 2000, seed: int = 0, chunk: int = 2048,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """Leave-one-out nearest-neighbour distances of up to `loo_queries` random training images (all of them when
    the set is smaller) to the rest of the training set: what the copy threshold is a quantile of.

    It depends on the training set alone, not on the generator, so one result can serve every generator trained
    on the same images (`audit(..., train_nn=...)`).
    """
    if isinstance(loo_queries, bool) or not isinstance(loo_queries, int) or loo_queries < 1:
        raise ValueError(f"loo_queries={loo_queries!r} must be a positive integer")
    t = as_features(train, embed)
    if len(t) < 2:
        raise ValueError(f"train has {len(t)} image(s); leave-one-out distances need at least 2")
    rng = torch.Generator().manual_seed(seed)
    queries = torch.randperm(len(t), generator=rng)[:loo_queries] if len(t) > loo_queries else torch.arange(len(t))
    return cross_nearest(t[queries], t, self_index=queries, chunk=chunk, device=device)[0]


def copier_auc(samples: int, members: int) -> float:
    """The attack AUC of a generator that returns random training images, given S samples and N members: it hits
    a share h = 1 - exp(-S/N) of the members (distance 0, ranked first), the rest tie with the non-members."""
    hit = 1 - math.exp(-samples / members)
    return 0.5 + hit / 2


# ---------------------------------------------------------------- the audit
@dataclass
class PrivacyReport:
    """Per-sample and per-real-image distances of one audit, and what follows from them (`summary`)."""

    space: str
    d_train: torch.Tensor           # (S,) each sample's distance to its nearest training image (all of them)
    nn_train: torch.Tensor          # (S,) index (into the training images) of that nearest training image
    d_heldout: torch.Tensor         # (S,) each sample's distance to its nearest held-out real image
    ratio: torch.Tensor             # (S,) d_train / d_heldout, both against equally large reference sets
    train_nn: torch.Tensor          # (Q,) leave-one-out NN distances of Q (up to loo_queries) training images
    heldout_nn: torch.Tensor        # (Q',) the same within the held-out set: its own copy threshold
    member_scores: torch.Tensor     # (N,) attack score of each training image: -(distance to nearest sample)
    nonmember_scores: torch.Tensor  # (H,) attack score of each held-out image
    copy_quantile: float
    threshold: float                # the copy_quantile quantile of train_nn: below it a sample counts as a copy
    threshold_heldout: float        # the copy_quantile quantile of heldout_nn

    @property
    def copy_rate(self) -> float:
        """P(d_train < τ_train): the share of samples that count as copies of a training image."""
        return float((self.d_train < self.threshold).float().mean())

    @property
    def copy_rate_heldout(self) -> float:
        """P(d_heldout < τ_heldout): the same share against images the generator never saw (the null's level)."""
        return float((self.d_heldout < self.threshold_heldout).float().mean())

    @property
    def copy_excess(self) -> float:
        """copy_rate - copy_rate_heldout: about 0 for a generator that does not copy, whatever its smoothness."""
        return self.copy_rate - self.copy_rate_heldout

    @property
    def mia_auc(self) -> float:
        return membership_auc(self.member_scores, self.nonmember_scores)

    def summary(self) -> dict:
        """Scalars for a run record. Reference values for a generator that does not copy: copy_excess about 0
        (copy_rate and copy_rate_heldout alike, about copy_quantile for samples as spread as real images),
        closer_to_train about 0.5, ratio_median about 1, mia_auc about 0.5; `copier_auc` is the formula's AUC of a
        generator returning random training images with as many samples (the notebook measures it instead, with
        the `Memoriser`)."""
        ratio = self.ratio.double()
        return {"copy_rate": self.copy_rate, "copy_threshold": self.threshold, "mia_auc": self.mia_auc,
                "copy_rate_heldout": self.copy_rate_heldout, "copy_threshold_heldout": self.threshold_heldout,
                "copy_excess": self.copy_excess,
                "copier_auc": copier_auc(len(self.d_train), len(self.member_scores)),
                "closer_to_train": float((ratio < 1).double().mean()),
                "ratio_median": float(ratio.median()), "ratio_p05": float(torch.quantile(ratio, 0.05)),
                "d_train_median": float(self.d_train.median()), "d_heldout_median": float(self.d_heldout.median()),
                "train_nn_median": float(self.train_nn.median()),
                "samples": len(self.d_train), "members": len(self.member_scores),
                "nonmembers": len(self.nonmember_scores)}


def audit(samples: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor,
          embed: Callable[[torch.Tensor], torch.Tensor] | None = None, copy_quantile: float = 0.05,
          space: str | None = None, loo_queries: int = 2000, seed: int = 0, chunk: int = 2048,
          device: str | torch.device = "cpu", train_nn: torch.Tensor | None = None,
          heldout_nn: torch.Tensor | None = None) -> PrivacyReport:
    """Audit synthetic `samples` against the generator's `train` images and `heldout` real images.

    Each is an image tensor (B, C, H, W), uint8 [0, 255] or float [0, 1], or (B, D) vectors computed beforehand.
    `embed=None` measures images in pixel space, otherwise in `embed`'s feature space (`space` labels the report:
    "pixel" or "feature"). `loo_queries` caps how many training images get a leave-one-out distance (the
    threshold is a quantile of them; all of them when the set is smaller); `seed` picks those and, when the two
    real sets differ in size, the equally large part of the larger one that the ratio is taken against.
    `train_nn` passes leave-one-out distances computed before for the same training set and space
    (`leave_one_out`), e.g. once for all generators trained on the whole pool; `heldout_nn` likewise for the
    held-out set (the copy excess's second threshold). `device` is where the distance
    matrices are computed (the inputs and the report stay on the CPU).
    """
    copy_quantile = check_quantile(copy_quantile)
    space = space or ("pixel" if embed is None else "feature")
    if space not in SPACES:
        raise ValueError(f"space={space!r} is unknown; allowed values: {', '.join(SPACES)}")
    if len(train) < 2 or len(heldout) < 2:
        raise ValueError(f"train has {len(train)} and heldout {len(heldout)} images; the leave-one-out thresholds "
                         f"need at least 2 images in each set")
    if len(samples) == 0:
        raise ValueError("samples is empty")
    s, t, h = (as_features(x, embed) for x in (samples, train, heldout))
    if not s.shape[1] == t.shape[1] == h.shape[1]:
        raise ValueError(f"samples, train and heldout have different dimensions: {s.shape[1]}, {t.shape[1]}, "
                         f"{h.shape[1]} (images of one shape, or vectors of one space)")
    rng = torch.Generator().manual_seed(seed)
    run = dict(chunk=chunk, device=device)
    # the whole training set: every copy is found, and every member gets its attack score, in one pass
    d_train, nn_train, member_d = cross_nearest(s, t, **run)
    d_heldout, _, nonmember_d = cross_nearest(s, h, **run)
    # the ratio compares distances to equally many references: the larger set is cut to the smaller one's size
    m = min(len(t), len(h))
    ratio_train = d_train if len(t) == m else cross_nearest(s, t[torch.randperm(len(t), generator=rng)[:m]], **run)[0]
    ratio_held = d_heldout if len(h) == m else cross_nearest(s, h[torch.randperm(len(h), generator=rng)[:m]], **run)[0]
    eps = 1e-6 * max(float(ratio_held.median()), 1e-12)   # an exact duplicate of both gives ~1, not 0/0
    ratio = (ratio_train + eps) / (ratio_held + eps)
    if train_nn is None:
        train_nn = leave_one_out(t, loo_queries=loo_queries, seed=seed, **run)
    if heldout_nn is None:
        heldout_nn = leave_one_out(h, loo_queries=loo_queries, seed=seed, **run)
    if len(t) == len(h):
        # equally large sets: one τ from both sets' leave-one-out distances (twice the values: a steadier quantile;
        # measured on 8x8 digits at N=300, per-set τ moved a smooth model's excess by up to 10 points)
        threshold = threshold_heldout = float(torch.quantile(torch.cat([train_nn, heldout_nn]).double(),
                                                             copy_quantile))
    else:
        threshold = float(torch.quantile(train_nn.double(), copy_quantile))
        threshold_heldout = float(torch.quantile(heldout_nn.double(), copy_quantile))
    return PrivacyReport(space, d_train, nn_train, d_heldout, ratio, train_nn, heldout_nn, -member_d, -nonmember_d,
                         copy_quantile, threshold, threshold_heldout)


def closest_pairs(report: PrivacyReport, k: int = 8) -> list[tuple[int, int, float]]:
    """The `k` samples nearest to a training image: (sample index, training-image index, distance), nearest first."""
    order = torch.argsort(report.d_train)[:k]
    return [(int(i), int(report.nn_train[i]), float(report.d_train[i])) for i in order]


def plot_closest_pairs(samples: torch.Tensor, train: torch.Tensor, pairs, title: str = "", threshold=None):
    """Two rows: the samples of `pairs` on top, each one's nearest training image below, distance in between
    (marked "copy" when below `threshold`)."""
    import matplotlib.pyplot as plt

    from .. import plots
    plots.style()
    k = max(1, len(pairs))
    fig, axes = plt.subplots(2, k, figsize=(1.3 * k, 3.0), squeeze=False)
    for col in range(k):
        for row in range(2):
            axes[row, col].axis("off")
        if col >= len(pairs):
            continue
        i, j, dist = pairs[col]
        for row, img in enumerate((samples[i], train[j])):
            img = images_to_unit(img[None])[0]
            shown = img[0] if img.shape[0] == 1 else img.permute(1, 2, 0)
            axes[row, col].imshow(shown.numpy(), cmap="gray", vmin=0, vmax=1)
        copy = threshold is not None and dist < threshold
        axes[0, col].set_title(f"{dist:.2f}{' copy' if copy else ''}", fontsize=8, color="C3" if copy else "k")
    axes[0, 0].text(-0.15, 0.5, "sample", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right")
    axes[1, 0].text(-0.15, 0.5, "nearest\ntraining", transform=axes[1, 0].transAxes, rotation=90, va="center",
                    ha="right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_vs_n(summary, ax, label: str, reference: float | None = None, hue: str = "generator", x: str = "n_train",
              bounds: tuple[float, float] = (0.0, 1.0)):
    """One line per `hue` level: mean with 95% CI error bars over seeds against N (log axis), `reference` dashed
    (what a generator that does not copy would score). `summary` comes from `metrics.summarize(..., by=[hue, x])`.
    Bars are clipped to `bounds`, the range of the quantity — [0, 1] for a rate or an AUC, [-1, 1] for a difference
    of rates such as the copy excess — since a t-interval over 3 seeds can overshoot it."""
    from .. import plots
    plots.style()
    for name, g in summary.groupby(hue):
        g = g.sort_values(x)
        mean = g["mean"].to_numpy()
        low = np.minimum(g["ci_low"].fillna(g["mean"]).clip(*bounds).to_numpy(), mean)
        high = np.maximum(g["ci_high"].fillna(g["mean"]).clip(*bounds).to_numpy(), mean)
        ax.errorbar(g[x], mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label=name)
    if reference is not None:
        ax.axhline(reference, color="0.4", ls="--", lw=1, label="no copying")
    ax.set_xscale("log")
    ax.set_xlabel("N training images of the generator")
    ax.set_ylabel(label)
    return ax


def plot_ratios(frame, ax, title: str = ""):
    """Distribution of d_train / d_heldout per N (`frame`: columns n, ratio); 1 = as near unseen as seen images."""
    import seaborn as sns

    from .. import plots
    plots.style()
    sns.boxplot(data=frame, x="n", y="ratio", ax=ax, showfliers=False, color="C0", width=0.5)
    ax.axhline(1.0, color="0.4", ls="--", lw=1)
    ax.set_xlabel("N training images of the generator")
    ax.set_ylabel("d_train / d_heldout per sample")
    ax.set_title(title, fontsize=10)
    return ax
