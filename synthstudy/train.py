"""The single training loop used by every arm of the study (real, synthetic pool, stream, mix).

    >>> from synthstudy import train, data, models, sources
    >>> splits = data.load("digits")
    >>> model = models.create_model("cnn", 1, 10, 8)
    >>> cfg = train.TrainConfig(steps=200, batch_size=128, seed=0)
    >>> result = train.fit(model, sources.ImageSetSource(splits.train), cfg)
    >>> train.evaluate(result.model, splits.test, cfg)["accuracy"]

The recipe (defaults of `TrainConfig`) is the one `make bench` measured: SGD with Nesterov momentum, a one-cycle
schedule (linear warm-up, then linear decay to zero), label smoothing, batch-level GPU-style augmentation done on
tensors (random translation + horizontal flip), channels_last, and flip test-time augmentation. A fixed step budget
makes arms comparable: every arm sees the same number of images whatever its data source.

The contrastive encoder (`contrastive.fit`) and the generators (`generators.base.Generator.fit`) train with the same
start (`setup`: device, threads, seeds, the loop's `rng`; `to_device`) and the same loss log (`LossLog`).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .progress import tqdm

# Bump when the classifier recipe or loop changes results: every classifier cell key holds it (`recipe_key`), so a
# changed recipe reruns the cells that used the old one instead of mixing them into one table.
# 2: budgets follow N (`steps_for_size`); validation scored beside test in every cell.
CLASSIFIER_VERSION = 2

AUGMENTATIONS = ("none", "flip", "crop", "flip_crop", "flip_crop_erase")
TTA = ("none", "flip", "flip_shift")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    steps: int = 3000                 # optimizer steps; the budget every arm shares (images seen = steps * batch)
    max_seconds: float = 0.0          # 0 = off (deterministic). >0: a wall-clock budget (make bench): training stops
                                      # then, and the LR schedule runs on elapsed time instead of steps
    batch_size: int = 256             # large batches keep both CPU cores busy
    lr: float = 0.1                   # peak learning rate of the one-cycle schedule (SGD, Nesterov)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.15              # share of the steps spent warming the LR up linearly from 0
    label_smoothing: float = 0.1
    augment: str = "flip_crop"        # one of AUGMENTATIONS; crop = random translation by up to `crop_pad` px
    crop_pad: int = 0                 # max translation in px; 0 = auto, 1 px per 14 px of width (2 at 28, 1 at 8)
    tta: str = "flip_shift"           # test-time augmentation, one of TTA: average logits over the image, its
                                      # mirror (flip) and 1-px translations (flip_shift); only views used in training
    seed: int = 0
    device: str = "auto"              # auto -> cuda if available, else mps, else cpu
    threads: int = 0                  # CPU threads; 0 = the cores this process may use
    channels_last: bool = True        # faster convolutions on CPU (oneDNN) and GPU tensor cores
    progress: bool = True             # tqdm bar over steps

    def __post_init__(self):
        check_positive("steps", self.steps)
        check_positive("batch_size", self.batch_size)
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be > 0")
        if not self.max_seconds >= 0:
            raise ValueError(f"max_seconds={self.max_seconds!r} must be >= 0 (0 = no time budget)")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup={self.warmup!r} must be in [0, 1)")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment={self.augment!r} is unknown; allowed values: {', '.join(AUGMENTATIONS)}")
        if self.tta not in TTA:
            raise ValueError(f"tta={self.tta!r} is unknown; allowed values: {', '.join(TTA)}")
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ValueError(f"device={self.device!r} is unknown; allowed values: {', '.join(DEVICES)}, cuda:<i>")


def steps_for_size(n: int, batch_size: int, epochs: float, min_steps: int, max_steps: int) -> int:
    """The classifier budget for N training images: `epochs` passes over them, clipped to [min_steps, max_steps].

    One rule for every arm at a given N (real, pools, stream, mixes, CAS), so arms differ only in their data. Why
    this shape (measured on an H200, 3 seeds each, scripts/calibrate_budgets.py, validation accuracy): small N
    saturates within a few hundred steps (N=100: 72.7% at 250 steps and 73.1% at 2,000; N=1,000: 85.1% → 85.9%),
    while the whole pool keeps climbing (N=55,000: 89.9% at 500, 91.7% at 1,000, 92.7% at 2,000, 93.4% at 4,000),
    so a fixed step count either starves large N or wastes time on small N; a pass count alone would give N=100
    a handful of steps.
    """
    check_positive("batch_size", batch_size)
    check_positive("min_steps", min_steps)
    check_positive("max_steps", max_steps)
    if not epochs > 0:
        raise ValueError(f"epochs={epochs!r} must be > 0 (passes over the N training images)")
    if min_steps > max_steps:
        raise ValueError(f"min_steps={min_steps} must be <= max_steps={max_steps}")
    return int(min(max_steps, max(min_steps, math.ceil(epochs * n / batch_size))))


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive integer")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; allowed here: auto, cpu")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                         f"allowed: cuda:0..cuda:{torch.cuda.device_count() - 1}, cuda, auto, cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' but Apple's MPS is not available; allowed here: auto, cpu")
    return torch.device(device)


def cpu_threads(requested: int = 0) -> int:
    """Threads for torch on CPU: `requested` if > 0, else $SYNTHSTUDY_THREADS if set, else the cores this process
    may run on (cgroup/affinity aware). On a shared machine set SYNTHSTUDY_THREADS=1: more torch threads than
    free cores make OpenMP threads spin-wait for each other, which was measured to slow training several-fold."""
    if requested > 0:
        return requested
    env = os.environ.get("SYNTHSTUDY_THREADS", "")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"SYNTHSTUDY_THREADS={env!r} must be a positive integer (or unset: all cores)")
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def to_model_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images -> float in [-1, 1] on `device` (the range generators work in)."""
    x = images.to(device, non_blocking=True)
    x = x.float().div_(127.5).sub_(1) if x.dtype == torch.uint8 else x.float().mul(2).sub_(1)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def augment_batch(x: torch.Tensor, kind: str, pad: int, rng: torch.Generator) -> torch.Tensor:
    """Per-sample random translation (zero padding) and horizontal flip, vectorised over the batch."""
    if kind == "none":
        return x
    b, c, h, w = x.shape
    if "crop" in kind and pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)  # -1 is black in model units
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=rng).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=rng).to(x.device)
        x = _shift(padded, dy, dx, h, w)
    if "flip" in kind:
        flip = (torch.rand(b, generator=rng) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if "erase" in kind:
        x = _erase(x, rng)
    return x


def _shift(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, h: int, w: int) -> torch.Tensor:
    b, c = padded.shape[:2]
    rows = dy[:, None] + torch.arange(h, device=padded.device)[None, :]          # (B, H)
    cols = dx[:, None] + torch.arange(w, device=padded.device)[None, :]          # (B, W)
    batch = torch.arange(b, device=padded.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def _erase(x: torch.Tensor, rng: torch.Generator, size_frac: float = 0.4) -> torch.Tensor:
    """Cutout: a square of side `size_frac` * width set to the mean (0) at a random place in each image."""
    b, _, h, w = x.shape
    s = max(1, int(round(size_frac * w)))
    cy = torch.randint(0, h, (b,), generator=rng).to(x.device)
    cx = torch.randint(0, w, (b,), generator=rng).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    my = ((ys - cy[:, None]).abs() <= s // 2)[:, :, None]
    mx = ((xs - cx[:, None]).abs() <= s // 2)[:, None, :]
    return x.masked_fill((my & mx)[:, None], 0.0)


def lr_at(progress: float, cfg: TrainConfig) -> float:
    """One-cycle on the share of the budget used (0..1): linear warm-up over `warmup`, then linear decay to 0."""
    if progress < cfg.warmup:
        return cfg.lr * max(progress / cfg.warmup, 1e-3)
    return cfg.lr * max(0.0, (1 - progress) / (1 - cfg.warmup))


@dataclass
class TrainResult:
    model: nn.Module
    seconds: float                     # wall time of the optimisation loop alone
    images_per_s: float
    steps: int                         # steps taken (fewer than cfg.steps when max_seconds ran out)
    images_seen: int = 0               # images trained on (a real + synthetic mix adds to the batch: more than
                                       # steps x batch_size)
    losses: list = field(default_factory=list)   # (step, mean loss since the previous entry)
    config: dict = field(default_factory=dict)


def sgd_nesterov(parameters, cfg) -> torch.optim.SGD:
    """The study's optimizer (classifier and contrastive encoder alike): SGD with Nesterov momentum, weight decay
    on weights only (BatchNorm parameters and biases, the 1-D tensors, get none)."""
    params = [p for p in parameters if p.requires_grad]
    return torch.optim.SGD([{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
                            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}],
                           lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def setup(seed: int, device: str = "auto", threads: int = 0) -> tuple[torch.device, torch.Generator]:
    """What every training loop does first (classifier, contrastive encoder, generator), in this order: resolve the
    device, give torch `cpu_threads(threads)` on a CPU, seed torch's global RNG (weight init, dropout) and return a
    fresh `rng` with the same seed for the loop's own draws (batches, augmentation, noise). Same seed, same run on
    a CPU. (The order is part of the results: changing it changes every random number a cached run drew.)"""
    dev = resolve_device(device)
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads(threads))
    torch.manual_seed(seed)
    return dev, torch.Generator().manual_seed(seed)


def to_device(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """`model` on `device`, in channels_last memory format if asked (faster convolutions on CPU and GPU)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


class LossLog:
    """The mean of each training loss term every `every` steps and at the last step, as (step, mean) points.

    One term (classifier, contrastive encoder, flow): `points`. Several (`terms`, e.g. the cVAE's loss,
    reconstruction and KL): `series[name]`, fed with `add(step, *values)` in the order of `terms`. The running sums
    stay on the device between points (no sync per step). A non-finite mean stops training, naming `what` and
    `hint` (what to lower). `bar`: a tqdm bar whose postfix shows the `postfix` terms' latest means.
    """

    def __init__(self, every: int, total_steps: int, device: torch.device, hint: str, terms: tuple = ("loss",),
                 what: str = "loss", bar=None, postfix: tuple = ()):
        self.every, self.total_steps, self.hint, self.what = every, total_steps, hint, what
        self.terms, self.bar, self.postfix = tuple(terms), bar, tuple(postfix)
        self.series: dict[str, list[tuple[int, float]]] = {name: [] for name in self.terms}
        self._sum = torch.zeros(len(self.terms) if len(self.terms) > 1 else (), device=device)
        self._count = 0

    @property
    def points(self) -> list[tuple[int, float]]:
        return self.series[self.terms[0]]

    def state_dict(self) -> dict:
        """The curve so far and the running sums (what a resumed fit needs to log as if never stopped)."""
        return {"series": {k: list(v) for k, v in self.series.items()}, "sum": self._sum.detach().cpu().clone(),
                "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self.series = {k: list(map(tuple, v)) for k, v in state["series"].items()}
        self._sum.copy_(state["sum"])
        self._count = state["count"]

    def add(self, step: int, *values: torch.Tensor) -> None:
        self._sum += values[0].detach() if len(values) == 1 else torch.stack([v.detach() for v in values])
        self._count += 1
        if self._count == self.every or step == self.total_steps - 1:
            # one term: the mean in double precision; several: in the sums' float32. Both as the loops computed them
            # before they shared this class, so a retrained model logs the curve its cached record holds
            means = (self._sum / self._count).tolist() if self._sum.ndim else [float(self._sum) / self._count]
            self._sum.zero_()
            self._count = 0
            for name, mean in zip(self.terms, means):
                self.series[name].append((step + 1, mean))
            if not all(math.isfinite(m) for m in means):
                became = means[0] if len(means) == 1 else dict(zip(self.terms, means))
                raise FloatingPointError(f"{self.what} became {became} at step {step + 1}; {self.hint}")
            if self.bar is not None:
                self.bar.set_postfix({name: f"{self.series[name][-1][1]:.4g}" for name in self.postfix})


def fit(model: nn.Module, source, cfg: TrainConfig, log_every: int = 50) -> TrainResult:
    """Train `model` on batches from `source` for `cfg.steps` steps. Same seed -> same weights on CPU."""
    device, rng = setup(cfg.seed, cfg.device, cfg.threads)
    model = to_device(model, device, cfg.channels_last)
    opt = sgd_nesterov(model.parameters(), cfg)
    model.train()
    log, steps_done, images_seen = LossLog(log_every, cfg.steps, device, f"lower lr={cfg.lr}"), 0, 0
    start = time.perf_counter()
    for step in tqdm(range(cfg.steps), disable=not cfg.progress, desc="train", leave=False, mininterval=1.0):
        images, labels = source.next_batch(cfg.batch_size, rng)
        x = to_model_input(images, device, cfg.channels_last)
        x = augment_batch(x, cfg.augment, cfg.crop_pad or max(1, round(x.shape[-1] / 14)), rng)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if cfg.max_seconds:
            progress = (time.perf_counter() - start) / cfg.max_seconds
            if progress >= 1:
                break
        else:
            progress = step / cfg.steps
        for group in opt.param_groups:
            group["lr"] = lr_at(progress, cfg)
        loss = F.cross_entropy(model(x), labels.to(device), label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps_done, images_seen = step + 1, images_seen + len(labels)
        log.add(step, loss)
    seconds = time.perf_counter() - start
    return TrainResult(model, seconds, images_seen / seconds, steps_done, images_seen, log.points, asdict(cfg))


def _translate(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Shift images by (dy, dx) pixels, filling with black (-1), as the training crop does."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    return padded[..., 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]


def tta_logits(model: nn.Module, x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Logits averaged over test-time views; a view is used only if training showed the model such images."""
    views = [x]
    if cfg.tta in ("flip", "flip_shift") and "flip" in cfg.augment:
        views.append(x.flip(3))
    if cfg.tta == "flip_shift" and "crop" in cfg.augment:
        views += [_translate(v, d, d) for v in list(views) for d in (-1, 1)]
    return torch.stack([model(v).float() for v in views]).mean(0)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, cfg: TrainConfig, batch_size: int = 1024) -> torch.Tensor:
    device = next(model.parameters()).device
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size], device, cfg.channels_last)
        out.append(tta_logits(model, x, cfg).cpu())
    return torch.cat(out)


def classifier_cell(source, cfg: TrainConfig, model_name: str, image_shape, num_classes: int,
                    val: ImageSet | None, test: ImageSet) -> dict:
    """Build → fit → score: the one classifier cell of every notebook and of the bench.

    The model is initialised from `cfg.seed` alone, trained on `source` for `cfg.steps`, then scored on `val` (for
    every selection and budget check) and on `test` (reported, never used to choose anything). Returns the
    record's metrics: `val_accuracy` (absent without a validation split), `test_accuracy`, `steps`,
    `images_seen`, `train_seconds`, `images_per_s`.
    """
    from . import models
    net = models.create_model(model_name, image_shape[0], num_classes, image_shape[-1], seed=cfg.seed)
    result = fit(net, source, cfg)
    scored = evaluate(result.model, test, cfg)
    out = {"test_accuracy": scored["accuracy"], "per_class_test_accuracy": scored["per_class_accuracy"],
           "steps": result.steps,
           "images_seen": result.images_seen, "train_seconds": result.seconds,
           "images_per_s": result.images_per_s}
    if val is not None:
        out["val_accuracy"] = evaluate(result.model, val, cfg)["accuracy"]
    return out


def evaluate(model: nn.Module, split: ImageSet, cfg: TrainConfig) -> dict:
    """Accuracy (and per-class accuracy) on a labelled split; use the test split only for final numbers."""
    pred = predict_logits(model, split.images, cfg).argmax(1)
    correct = (pred == split.labels).float()
    per_class = [float(correct[split.labels == c].mean()) for c in torch.unique(split.labels).tolist()]
    return {"accuracy": float(correct.mean()), "per_class_accuracy": per_class, "n": len(split)}
