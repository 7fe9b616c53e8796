"""Bias audit: a generator trained on class-imbalanced data, does it make the imbalance worse?

The promise of a generator as a data source includes *balanced* data on demand: ask for as many rare-class
images as common ones. That only helps if the generator learned the rare classes about as well as the common
ones. This module builds a deliberately imbalanced training set and measures what comes out of a generator
trained on it:

- `imbalanced_indices`: a seeded subset with exactly `per_class` images of every majority class and
  `max(1, round(rare_fraction * per_class))` of every class in `rare_classes` (`rare_fraction=1`: balanced).
- `per_class_quality`: precision and recall (Naeem et al. 2020, via `quality.prdc`) of each class's samples
  against held-out real images of that class in the domain feature space: precision = are the samples
  realistic, recall = do they cover the class's variety. (Per-class CAS comes from training on the samples.)
- `generation_shares`: sampling *not* forced towards the rare classes (labels drawn uniformly, or with the
  training set's class frequencies), how often does a classifier trained on real balanced data (the "judge")
  call a sample a minority class? Compared with what the judge says of real images drawn with the same labels,
  so the judge's own confusions are not blamed on the generator. A conditional generator whose rare-class
  samples drift towards common classes shows judged < expected.
- `BalancedResampler`: the fair real reference. Synthetic data can be drawn class-balanced at will, so comparing
  it with a real classifier trained on the imbalanced frequencies mostly measures rebalancing, not generation.
  This source draws each batch's classes uniformly and an image of that class uniformly (with replacement), so
  the real arm gets the same balance the generator offers, from the same few rare images.
- `majority_minority_gap`: of the per-class test accuracy of a classifier (`train.classifier_cell`: one recipe,
  one budget for every arm); gap = mean accuracy over majority classes - mean over minority classes. The verdicts
  (paired on seeds, Holm over the notebook) are `analysis.bias_comparisons`: synthetic balanced vs real balanced
  is the amplification; synthetic matched vs real imbalanced is the like-for-like one.

    >>> from synthstudy.audits import bias
    >>> idx = bias.imbalanced_indices(pool.labels, per_class=500, rare_classes=[0, 4, 7], rare_fraction=0.1, seed=0)
    >>> freqs = bias.class_frequencies(pool.labels[idx], 10)
    >>> source = sources.GeneratorStream(gen, class_probs=freqs)      # like the real data
    >>> bias.majority_minority_gap(per_class_accuracy, rare_classes=[0, 4, 7])
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..data import ImageSet

ARMS = ("real", "real_balanced", "synthetic_matched", "synthetic_balanced")


# ---------------------------------------------------------------- the imbalanced subset
def check_imbalance(num_classes: int, rare_classes, rare_fraction) -> tuple[tuple[int, ...], float]:
    """Validate the imbalance parameters; returns (sorted rare classes, rare_fraction as float)."""
    allowed = f"0..{num_classes - 1}"
    if not isinstance(rare_classes, (list, tuple, np.ndarray)) or len(rare_classes) == 0:
        raise ValueError(f"rare_classes={rare_classes!r} must be a non-empty list of class ids; allowed values: "
                         f"{allowed}")
    bad = [c for c in rare_classes
           if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"rare_classes={list(rare_classes)!r}: {bad} not class ids; allowed values: {allowed}")
    if len(set(int(c) for c in rare_classes)) != len(rare_classes):
        raise ValueError(f"rare_classes={list(rare_classes)!r} repeats a class; list each class once")
    if len(rare_classes) >= num_classes:
        raise ValueError(f"rare_classes={list(rare_classes)!r} makes every class rare; at least one of {allowed} "
                         f"must stay a majority class (the gap is measured between the two groups)")
    if isinstance(rare_fraction, bool) or not isinstance(rare_fraction, (int, float)) or not 0 < rare_fraction <= 1:
        raise ValueError(f"rare_fraction={rare_fraction!r} must be a number in (0, 1]: a rare class gets that share "
                         f"of a majority class's images (1 = balanced)")
    return tuple(sorted(int(c) for c in rare_classes)), float(rare_fraction)


def imbalanced_counts(num_classes: int, per_class: int, rare_classes, rare_fraction: float) -> np.ndarray:
    """Images per class: `per_class` for a majority class, max(1, round(rare_fraction * per_class)) for a rare one."""
    if isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer)) or per_class <= 0:
        raise ValueError(f"per_class={per_class!r} must be a positive integer (images of each majority class)")
    rare, fraction = check_imbalance(num_classes, rare_classes, rare_fraction)
    counts = np.full(num_classes, int(per_class))
    counts[list(rare)] = max(1, int(round(fraction * per_class)))
    return counts


def imbalanced_indices(labels, per_class: int, rare_classes, rare_fraction: float, seed: int,
                       num_classes: int | None = None) -> np.ndarray:
    """Sorted indices into `labels` with exactly `imbalanced_counts(...)` images of each class, chosen by `seed`."""
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    counts = imbalanced_counts(num_classes, per_class, rare_classes, rare_fraction)
    available = np.bincount(labels, minlength=num_classes)
    short = [c for c in range(num_classes) if available[c] < counts[c]]
    if short:
        most = int(available.min())
        raise ValueError(f"per_class={per_class} asks for more images than class(es) {short} hold "
                         f"({[int(available[c]) for c in short]}); allowed: per_class up to {most}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=int(k), replace=False) for c, k in enumerate(counts)]
    return np.sort(np.concatenate(chosen))


def class_frequencies(labels, num_classes: int) -> torch.Tensor:
    """The share of each class among `labels` (float64, sums to 1)."""
    counts = torch.bincount(torch.as_tensor(np.asarray(labels), dtype=torch.long), minlength=num_classes)
    return counts.double() / counts.sum()


# ---------------------------------------------------------------- sampling and judging
@torch.no_grad()
def predict_labels(classifier: torch.nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The classifier's predicted class per image (uint8 or [0, 1] float images; no test-time augmentation)."""
    from ..train import to_model_input
    classifier.eval()
    device = next(classifier.parameters()).device
    return torch.cat([classifier(to_model_input(images[i:i + batch_size], device, False)).argmax(1).cpu()
                      for i in range(0, len(images), batch_size)])


def confusion(predicted, labels, num_classes: int) -> torch.Tensor:
    """Row-normalised confusion matrix: entry [c, k] = share of class-c images predicted as k."""
    predicted, labels = torch.as_tensor(predicted).long(), torch.as_tensor(labels).long()
    counts = torch.bincount(labels * num_classes + predicted, minlength=num_classes ** 2).view(num_classes, -1)
    return counts.double() / counts.sum(1, keepdim=True).clamp(min=1)


def generation_shares(generator_model, classify: Callable[[torch.Tensor], torch.Tensor], label_probs,
                      rare_classes, count: int, seed: int, real_confusion: torch.Tensor,
                      batch_size: int = 500) -> dict:
    """Draw `count` labels from `label_probs`, sample them, and ask the judge (`classify`: images -> labels).

    Returns the minority share requested, the share the judge should report if every sample looked like a real
    image of its label (`expected`, from the judge's confusion matrix on real held-out images), the share it does
    report (`judged`), judged / expected, and the judge's agreement with the requested label per class.
    """
    from .privacy import generate
    probs = torch.as_tensor(label_probs, dtype=torch.float64)
    probs = probs / probs.sum()
    rare = torch.zeros(len(probs), dtype=torch.bool)
    rare[list(rare_classes)] = True
    # labels from numpy's generator: `generate` seeds a torch stream with `seed`, and sharing it would tie labels
    # to latents
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.choice(len(probs), size=count, p=probs.numpy()))
    predicted = classify(generate(generator_model, labels, seed=seed, batch_size=batch_size))
    expected = float((probs[:, None] * real_confusion.double())[:, rare].sum())
    judged = float(rare[predicted].double().mean())
    agreement = [float((predicted[labels == c] == c).double().mean()) if (labels == c).any() else float("nan")
                 for c in range(len(probs))]
    return {"requested": float(rare[labels].double().mean()), "expected": expected, "judged": judged,
            "judged_over_expected": judged / expected if expected > 0 else float("nan"), "agreement": agreement}


def per_class_quality(embed: Callable[[torch.Tensor], torch.Tensor], real: ImageSet, generator_model, seed: int,
                      nearest_k: int = 5) -> dict[int, dict]:
    """Precision / recall / density / coverage of each class's samples against `real` images of that class.

    As many samples as real images per class (the measures depend on both sizes), all in `embed`'s space;
    use held-out real images (the validation split), not the generator's training set.
    """
    from .. import quality
    from .privacy import generate
    real_f = torch.as_tensor(embed(real.images)).float()
    fake = generate(generator_model, real.labels, seed=seed)     # class-forced: the same labels as the real set
    fake_f = torch.as_tensor(embed(fake)).float()
    out = {}
    for c in torch.unique(real.labels).tolist():
        mask = real.labels == c
        if int(mask.sum()) <= nearest_k:
            raise ValueError(f"per-class precision/recall with nearest_k={nearest_k} needs more than {nearest_k} "
                             f"real images of class {c}, got {int(mask.sum())}; allowed: a larger real set")
        out[int(c)] = quality.prdc(real_f[mask], fake_f[mask], nearest_k)
    return out


# ---------------------------------------------------------------- the gap and its change
def group_means(per_class_values, rare_classes) -> tuple[float, float]:
    """(mean over majority classes, mean over `rare_classes`) of a per-class list."""
    values = np.asarray(per_class_values, dtype=float)
    rare = np.zeros(len(values), dtype=bool)
    rare[list(rare_classes)] = True
    if rare.all() or not rare.any():
        raise ValueError(f"rare_classes={list(rare_classes)} must name some but not all of the "
                         f"{len(values)} classes")
    return float(values[~rare].mean()), float(values[rare].mean())


def majority_minority_gap(per_class_values, rare_classes) -> float:
    """Mean of `per_class_values` over majority classes minus the mean over `rare_classes` (positive: the
    minority is worse off)."""
    majority, minority = group_means(per_class_values, rare_classes)
    return majority - minority


class BalancedResampler:
    """Class-balanced resampling of a real set: each image's class uniform over the classes present, the image
    uniform within its class (with replacement, so a rare class's few images repeat). Seeded by the caller's
    generator, like `sources.ImageSetSource`."""

    def __init__(self, images: ImageSet):
        if len(images) == 0:
            raise ValueError("BalancedResampler needs at least one image")
        self.images = images
        labels = torch.as_tensor(images.labels).long()
        self.classes = torch.unique(labels)
        self._members = [torch.nonzero(labels == c).flatten() for c in self.classes]
        self._counts = torch.tensor([len(m) for m in self._members])

    def __len__(self) -> int:
        return len(self.images)

    def next_batch(self, batch_size: int, rng: torch.Generator):
        which = torch.randint(len(self.classes), (batch_size,), generator=rng)
        within = (torch.rand(batch_size, generator=rng) * self._counts[which]).long()
        idx = torch.stack([self._members[int(c)][int(i)] for c, i in zip(which, within)])
        return self.images.images[idx], self.images.labels[idx]


def plot_per_class(frame, ax, rare_classes, class_names, value: str = "accuracy", label: str = "test accuracy (%)"):
    """Per-class `value` (mean ± 95% CI over seeds, in %) for each `arm` of `frame` (columns arm, cls, seed,
    value); minority classes are shaded and marked "(rare)". Error bars are clipped to [0, 100]%."""
    from .. import plots
    from ..metrics import summarize
    plots.style()
    summary = summarize(frame, by=["arm", "cls"], value=value)
    arms = sorted(summary["arm"].unique(), key=lambda a: (not a.startswith("real"), a))
    width = 0.8 / len(arms)
    for c in rare_classes:
        ax.axvspan(c - 0.45, c + 0.45, color="0.9", zorder=0)
    for i, arm in enumerate(arms):
        g = summary[summary["arm"] == arm].sort_values("cls")
        mean, half = g["mean"].to_numpy(), g["ci"].fillna(0).to_numpy()
        yerr = [mean - np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1) - mean]
        ax.errorbar(g["cls"] + (i - (len(arms) - 1) / 2) * width, mean * 100, yerr=np.array(yerr) * 100,
                    fmt="o", ms=4, capsize=2, label=arm)
    ax.set_xticks(range(len(class_names)))
    ax.set_xticklabels([f"{n}{' (rare)' if i in rare_classes else ''}" for i, n in enumerate(class_names)],
                       rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    return ax
