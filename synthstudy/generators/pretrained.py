"""Off-the-shelf class-conditional generators, loaded not trained, behind the zoo's `Generator` interface.

GenRep drew its views from a pretrained ImageNet BigGAN. This module puts such models in the same registry as the
families this study trains, so every notebook can use them by name:

    >>> gen = generators.create("biggan-deep-128", image_shape=(3, 32, 32), num_classes=10,
    ...                         classes=data.CIFAR10_CLASSES, pretrained_path="weights/biggan-deep-128")
    >>> x = gen.sample(labels, rng=torch.Generator().manual_seed(0))   # float (B, 3, 32, 32) in [0, 1], CPU
    >>> z = gen.sample_latents(labels, rng); views = gen.decode(z + 0.3 * torch.randn_like(z), labels)

Families (`PRETRAINED` lists the names):
- `biggan-deep-128`, `-256`, `-512`: BigGAN-deep through the `pytorch-pretrained-biggan` package (GenRep's
  generator). Latent: BigGAN's z, `truncation` x a normal truncated to [-2, 2] (BigGAN's own convention; its batch
  norm statistics are chosen by the same `truncation`, in (0, 1], default 1.0 as in GenRep's scripts).
- `dit-xl-2-256`, `dit-xl-2-512`: the class-conditional DiT pipelines of `diffusers` (`facebook/DiT-XL-2-*`).
  Latent: the initial noise of a deterministic DPM-Solver++ sampler (`num_inference_steps`, classifier-free
  `guidance_scale`), flattened; `truncation` (default off) redraws noise entries beyond it. `dtype="auto"` runs
  bfloat16 on a GPU (7.7x the float32 speed on an H200) and float32 on a CPU.
Outputs are resized (antialiased) to the study's `image_shape`, and made grey when it has one channel.

Classes. The study's class names (`classes`, e.g. `splits.classes`) are mapped onto ImageNet-1k's 1,000 classes:
a WordNet id (an ImageNet-subset folder name such as n01440764) maps to its class; a CIFAR-10 name maps through
`CIFAR10_TO_IMAGENET`; `class_map={name: [ImageNet index or WordNet id, ...]}` overrides or extends both. When a
study class has several ImageNet classes, the latent's last coordinate (a standard normal) chooses among them
through its normal quantile, so nearby latents keep their ImageNet class and a view that crosses over stays in the
same study class. (A contrastive `truncation` clamps that coordinate too, and so favours the middle choices.)

Weights load only from a local folder (`pretrained_path`, else `$SYNTHSTUDY_PRETRAINED/<name>`) in the library's
own format, or from the internet with `allow_download=True`; models too slow for a CPU (`gpu_only` in `SPECS`)
need a GPU or `allow_cpu_pretrained=True`. Every check (name, classes, weights, device, package, network) runs in
`check_ready`, before anything is loaded; `config.py` calls it when it validates a notebook's parameters.
These generators are not trained: `fit` does nothing, and `fit_cached` / `fit_on_subset` return them loaded.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..train import resolve_device
from .base import Generator, check_number

ENV_WEIGHTS = "SYNTHSTUDY_PRETRAINED"          # a folder holding <name>/ weight folders (for notebook runs)
IMAGENET_CLASSES = 1000
INSTALL_HINT = "pip install -e '.[pretrained]'"


@dataclass(frozen=True)
class PretrainedSpec:
    """What the registry needs to know about one pretrained model before loading it."""

    name: str                   # registry name, e.g. "biggan-deep-128"
    library: str                # "biggan" (pytorch-pretrained-biggan) or "diffusers"
    source: str                 # what the library downloads: a BigGAN model name or a Hugging Face repo id
    native_size: int            # output side in pixels
    gpu_only: bool              # too slow for a CPU without explicit consent (allow_cpu_pretrained)
    size_gb: float              # download size, for the messages

    @property
    def module(self) -> str:
        return {"biggan": "pytorch_pretrained_biggan", "diffusers": "diffusers"}[self.library]

    @property
    def package(self) -> str:
        return {"biggan": "pytorch-pretrained-biggan", "diffusers": "diffusers"}[self.library]

    @property
    def local_files(self) -> tuple[str, ...]:
        """Files a local weights folder must hold (each library's own save format)."""
        return {"biggan": ("config.json", "pytorch_model.bin"), "diffusers": ("model_index.json",)}[self.library]


# gpu_only: measured with the real architectures (random weights), BigGAN-deep-128 takes about 1.4 s per image per
# CPU thread (usable for small pools; 2,250 images/s on an H200), DiT-XL/2-256 with 25 guided steps 27 images/s on an
# H200 in bfloat16 (3.6 in float32); the larger BigGANs and DiT take tens of seconds per image on a CPU.
SPECS = {spec.name: spec for spec in (
    PretrainedSpec("biggan-deep-128", "biggan", "biggan-deep-128", 128, gpu_only=False, size_gb=0.23),
    PretrainedSpec("biggan-deep-256", "biggan", "biggan-deep-256", 256, gpu_only=True, size_gb=0.23),
    PretrainedSpec("biggan-deep-512", "biggan", "biggan-deep-512", 512, gpu_only=True, size_gb=0.23),
    PretrainedSpec("dit-xl-2-256", "diffusers", "facebook/DiT-XL-2-256", 256, gpu_only=True, size_gb=2.8),
    PretrainedSpec("dit-xl-2-512", "diffusers", "facebook/DiT-XL-2-512", 512, gpu_only=True, size_gb=2.8),
)}

# CIFAR-10 class -> ImageNet-1k class indices (ImageNet's standard order, the sorted WordNet ids). Chosen by hand:
# ImageNet has no deer (the nearest are antelopes) and one horse class; CIFAR's "truck" holds big trucks only and
# neither CIFAR class holds pickups, so 717 (pickup) is in neither.
CIFAR10_TO_IMAGENET: dict[str, tuple[int, ...]] = {
    "airplane": (404, 895),                                     # airliner, warplane
    "automobile": (436, 468, 511, 609, 627, 656, 751, 817),     # station wagon, cab, convertible, jeep, limousine,
                                                                # minivan, race car, sports car
    "bird": (*range(7, 25), *range(80, 101), *range(127, 147)),  # cock .. great grey owl, grouse .. black swan,
                                                                 # storks, herons, waders, pelican, penguin, albatross
    "cat": (281, 282, 283, 284, 285),                           # tabby, tiger cat, Persian, Siamese, Egyptian cat
    "deer": (351, 352, 353),                                    # hartebeest, impala, gazelle
    "dog": tuple(range(151, 269)),                              # the 118 dog breeds, Chihuahua .. Mexican hairless
    "frog": (30, 31, 32),                                       # bullfrog, tree frog, tailed frog
    "horse": (339,),                                            # sorrel
    "ship": (484, 510, 554, 628, 724, 780, 871),                # catamaran, container ship, fireboat, liner,
                                                                # pirate ship, schooner, trimaran
    "truck": (555, 569, 675, 864, 867),                         # fire engine, garbage truck, moving van,
                                                                # tow truck, trailer truck
}
WNID = re.compile(r"^n\d{8}$")


class PretrainedUnavailableError(ValueError):
    """A pretrained generator cannot be used as asked; the message names the parameter to change."""


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-1k's WordNet ids in class-index order (shipped with timm, so no download)."""
    from timm.data import ImageNetInfo
    return tuple(ImageNetInfo().label_names())


def imagenet_label(index: int) -> str:
    """A readable name of an ImageNet class index (its first lemma), for plots and messages."""
    from timm.data import ImageNetInfo
    return ImageNetInfo().index_to_description(index).split(",")[0]


def imagenet_ids(name: str, classes, class_map: dict | None = None) -> list[tuple[int, ...]]:
    """For each study class, the ImageNet class indices generator `name` draws it from; a ValueError lists every
    class without a counterpart and what is allowed."""
    wnids = imagenet_wnids()
    index_of = {w: i for i, w in enumerate(wnids)}

    def to_index(value):
        if isinstance(value, str) and value in index_of:
            return index_of[value]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(wnids):
            return value
        raise ValueError(f"class_map value {value!r} is neither an ImageNet class index (0..{len(wnids) - 1}) nor "
                         f"an ImageNet WordNet id (e.g. {wnids[0]})")

    if class_map is not None and not isinstance(class_map, dict):
        raise ValueError(f"class_map={class_map!r} must be a dict {{class name: [ImageNet index or WordNet id]}}")
    unknown_keys = sorted(set(class_map or {}) - set(classes))
    if unknown_keys:
        raise ValueError(f"class_map has key(s) {unknown_keys} that are not study classes; allowed keys: "
                         f"{', '.join(map(str, classes))}")
    ids, missing = [], []
    for cls in classes:
        if class_map and cls in class_map:
            values = class_map[cls]
            values = [values] if isinstance(values, (int, str)) else list(values)
            if not values:
                raise ValueError(f"class_map[{cls!r}] is empty; give at least one ImageNet class")
            ids.append(tuple(to_index(v) for v in values))
        elif cls in index_of:
            ids.append((index_of[cls],))
        elif cls in CIFAR10_TO_IMAGENET:
            ids.append(CIFAR10_TO_IMAGENET[cls])
        else:
            missing.append(cls)
    if missing:
        raise ValueError(
            f"class(es) {missing} have no counterpart among generator={name!r}'s {len(wnids)} ImageNet classes; "
            f"allowed class names: ImageNet WordNet ids (e.g. {wnids[0]}, as in an ImageNet-subset folder) or "
            f"{', '.join(CIFAR10_TO_IMAGENET)}; or pass class_map={{class name: [ImageNet index or WordNet id, ...]}}")
    return ids


def _spec(name: str) -> PretrainedSpec:
    if name not in SPECS:
        raise ValueError(f"generator={name!r} is not a pretrained generator; allowed values: {', '.join(SPECS)}")
    return SPECS[name]


def weights_folder(name: str, pretrained_path: str | os.PathLike | None = None,
                   allow_download: bool = False) -> Path | None:
    """The local folder to load `name` from, or None to download it; a PretrainedUnavailableError otherwise."""
    spec = _spec(name)
    env_root = os.environ.get(ENV_WEIGHTS, "")
    if pretrained_path:
        folder, origin = Path(pretrained_path).expanduser(), f"pretrained_path={str(pretrained_path)!r}"
    elif env_root and (Path(env_root).expanduser() / name).is_dir():
        folder, origin = Path(env_root).expanduser() / name, f"${ENV_WEIGHTS}/{name}"
    else:
        if allow_download:
            return None
        where = (f" (${ENV_WEIGHTS}={env_root!r} has no {name}/ folder)" if env_root else "")
        raise PretrainedUnavailableError(
            f"generator={name!r} needs its weights and none may be loaded: pass allow_download=true (downloads "
            f"{spec.source}, about {spec.size_gb:g} GB, needs internet) or pretrained_path=<a folder holding "
            f"{', '.join(spec.local_files)}>{where}")
    if not folder.is_dir():
        raise PretrainedUnavailableError(f"generator={name!r}: {origin} is not a folder")
    missing = [f for f in spec.local_files if not (folder / f).is_file()]
    if missing:
        raise PretrainedUnavailableError(
            f"generator={name!r}: {origin} lacks {', '.join(missing)}; a {spec.package} weights folder holds "
            f"{', '.join(spec.local_files)} (see README, 'Using a pretrained generator')")
    return folder


def _download_url(spec: PretrainedSpec) -> str:
    if spec.library == "biggan":
        from pytorch_pretrained_biggan.model import PRETRAINED_CONFIG_ARCHIVE_MAP
        return PRETRAINED_CONFIG_ARCHIVE_MAP[spec.source]
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{spec.source}/resolve/main/model_index.json"


def check_download_reachable(name: str, timeout: float = 10.0) -> None:
    """Fail fast, with a message naming the parameters, when the weights' server cannot be reached (an offline
    machine): the libraries would otherwise retry or hang before failing with a network traceback."""
    import requests
    spec = _spec(name)
    if spec.library == "diffusers" and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        problem = "HF_HUB_OFFLINE is set"
    else:
        url = _download_url(spec)
        try:
            status = requests.head(url, timeout=timeout, allow_redirects=True).status_code
        except requests.RequestException as err:
            status, problem = None, f"{url} cannot be reached ({type(err).__name__})"
        if status is not None and status < 400:
            return
        if status is not None:         # e.g. a proxy that refuses the host: the library would fail the same way
            problem = f"{url} answered HTTP {status}"
    raise PretrainedUnavailableError(
        f"generator={name!r} with allow_download=true, but {problem}: this machine looks offline. Download the "
        f"weights on a machine with internet (see README, 'Using a pretrained generator') and pass "
        f"pretrained_path=<that folder> (or put it at ${ENV_WEIGHTS}/{name})")


def check_ready(name: str, classes=None, class_map: dict | None = None, allow_download: bool = False,
                pretrained_path: str | os.PathLike | None = None, device: str = "auto",
                allow_cpu_pretrained: bool = False, probe_network: bool = True) -> Path | None:
    """Every check that can refuse `name` before anything is loaded, in the order a user fixes them: the name, the
    classes, the weights' source, the device, the package, the network. Returns `weights_folder`'s answer."""
    spec = _spec(name)
    if classes is not None:
        imagenet_ids(name, classes, class_map)
    folder = weights_folder(name, pretrained_path, allow_download)
    dev = resolve_device(device)
    if spec.gpu_only and dev.type == "cpu" and not allow_cpu_pretrained:
        raise PretrainedUnavailableError(
            f"generator={name!r} is meant for a GPU (tens of seconds per image on a CPU), but device={device!r} "
            f"resolves to the CPU here; use a machine with a GPU, or pass allow_cpu_pretrained=true to run it anyway")
    if importlib.util.find_spec(spec.module) is None:
        raise PretrainedUnavailableError(f"generator={name!r} needs the {spec.package} package: {INSTALL_HINT}")
    if folder is None and probe_network:
        check_download_reachable(name)
    return folder


def truncated_normal(shape, bound: float | None, rng: torch.Generator | None) -> torch.Tensor:
    """Standard normal draws on CPU; with `bound`, every entry with |z| > bound is redrawn until none is."""
    z = torch.randn(shape, generator=rng)
    if bound is not None:
        while True:
            bad = z.abs() > bound
            if not bad.any():
                break
            z = torch.where(bad, torch.randn(shape, generator=rng), z)
    return z


class PretrainedGenerator(Generator):
    """Shared behaviour of the pretrained families: class mapping, loading, the latent's class selector, resizing.

    Subclasses set `spec` and implement `_load(folder)` (build the network from a folder, or download when None),
    `noise_dim`, `_sample_noise` and `_generate(noise, imagenet_labels)` -> images in [-1, 1] at native size.
    """

    family = "pretrained"
    spec: PretrainedSpec

    def _setup(self, classes, class_map, allow_download, pretrained_path, allow_cpu_pretrained, device,
               decode_batch_size) -> None:
        channels, height, width = self.image_shape
        if channels not in (1, 3) or height != width:
            raise ValueError(f"image_shape={self.image_shape!r}: generator={self.spec.name!r} makes square RGB "
                             f"images; allowed: (3, S, S) or (1, S, S) (turned grey)")
        if decode_batch_size is not None and (isinstance(decode_batch_size, bool)
                                              or not isinstance(decode_batch_size, int) or decode_batch_size <= 0):
            raise ValueError(f"decode_batch_size={decode_batch_size!r} must be a positive integer")
        if classes is None:
            if self.num_classes != IMAGENET_CLASSES:
                raise ValueError(f"generator={self.spec.name!r} needs classes=<the study's class names> (e.g. "
                                 f"splits.classes) to map them onto ImageNet; got num_classes={self.num_classes}")
            classes = imagenet_wnids()
        classes = tuple(str(c) for c in classes)
        if len(classes) != self.num_classes:
            raise ValueError(f"classes has {len(classes)} names but num_classes={self.num_classes}")
        started = time.perf_counter()
        folder = check_ready(self.spec.name, classes, class_map, allow_download, pretrained_path, device,
                             allow_cpu_pretrained)
        ids = imagenet_ids(self.spec.name, classes, class_map)
        # Lookup table: row = study class, columns = its ImageNet classes (padded by repeating the last one).
        width_ids = max(len(i) for i in ids)
        self._choices = torch.tensor([list(i) + [i[-1]] * (width_ids - len(i)) for i in ids], dtype=torch.long)
        self._counts = torch.tensor([len(i) for i in ids], dtype=torch.long)
        self.has_selector = width_ids > 1
        self.decode_batch_size = decode_batch_size or self.default_decode_batch_size
        self._load(folder)
        self.latent_dim = self.noise_dim + int(self.has_selector)
        self.to(resolve_device(device))
        self.eval()
        self.history = {"pretrained": self.spec.name, "weights": str(folder) if folder else self.spec.source,
                        "load_seconds": time.perf_counter() - started, "seconds": 0.0, "steps": 0,
                        # a dict, not a list: notebooks read a history's lists as training curves
                        "imagenet_classes": {c: list(i) for c, i in zip(classes, ids)}}

    # ---------------------------------------------------------------- to implement
    default_decode_batch_size = 32
    noise_dim = 0

    def _load(self, folder: Path | None) -> None:
        raise NotImplementedError

    def _sample_noise(self, n: int, rng: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def _generate(self, noise: torch.Tensor, imagenet_labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---------------------------------------------------------------- the Generator interface
    def train(self, mode: bool = True):
        # Only ever sampled: keep dropout off and spectral norm's power iteration frozen, so that the same latent
        # always decodes to the same image.
        return super().train(False)

    def fit(self, train, steps: int, seed: int, device: str = "auto", progress: bool = True,
            batch_size: int | None = None, threads: int = 0, checkpoint=None, checkpoint_every: float = 300.0) -> dict:
        """Nothing to fit: a pretrained generator is used as downloaded. Returns its (loading) history."""
        return self.history

    def sample_latents(self, labels, rng: torch.Generator | None = None) -> torch.Tensor:
        """(B, latent_dim) on CPU: the model's noise, then (when a class has several ImageNet classes) a standard
        normal selector coordinate."""
        labels = self.check_labels(labels)
        parts = [self._sample_noise(len(labels), rng)]
        if self.has_selector:
            parts.append(torch.randn(len(labels), 1, generator=rng))
        return torch.cat(parts, dim=1)

    def imagenet_labels(self, labels: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The ImageNet class each (study label, latent) decodes as: the selector's normal quantile picks one of the
        class's ImageNet classes, in equal shares."""
        labels = labels.cpu()
        if not self.has_selector:
            return self._choices[labels, 0]
        quantile = 0.5 * (1 + torch.erf(z[:, -1].float().cpu() / math.sqrt(2)))
        counts = self._counts[labels]
        pick = torch.minimum((quantile * counts).long(), counts - 1)
        return self._choices[labels, pick]

    def _decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        imagenet = self.imagenet_labels(labels, z).to(z.device)
        noise = z[:, :self.noise_dim]
        out = []
        for start in range(0, len(z), self.decode_batch_size):
            part = slice(start, start + self.decode_batch_size)
            out.append(self._to_study_images(self._generate(noise[part], imagenet[part])))
        return torch.cat(out) if out else torch.zeros(0, *self.image_shape)

    def _to_study_images(self, x: torch.Tensor) -> torch.Tensor:
        """Native [-1, 1] RGB -> [0, 1] at the study's size (antialiased when shrinking) and channel count."""
        x = (x.float() + 1) / 2
        size = self.image_shape[1]
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self.image_shape[0] == 1:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])   # ITU-R 601 luma
        return x


class BigGANGenerator(PretrainedGenerator):
    """BigGAN-deep (pytorch-pretrained-biggan): z ~ truncation x TruncNormal(-2, 2), one-hot ImageNet class."""

    def __init__(self, image_shape, num_classes: int, classes=None, class_map: dict | None = None,
                 truncation: float = 1.0, allow_download: bool = False, pretrained_path: str | None = None,
                 allow_cpu_pretrained: bool = False, device: str = "auto", decode_batch_size: int | None = None):
        config = {"classes": None if classes is None else [str(c) for c in classes], "class_map": class_map,
                  "truncation": truncation, "allow_download": allow_download, "pretrained_path": pretrained_path,
                  "allow_cpu_pretrained": allow_cpu_pretrained, "device": device,
                  "decode_batch_size": decode_batch_size}
        super().__init__(image_shape, num_classes, config)
        # BigGAN keeps batch-norm statistics for truncations in (0, 1] only
        self.truncation = check_number("truncation", truncation, 0.0, 1.0, low_open=True)
        self._setup(classes, class_map, allow_download, pretrained_path, allow_cpu_pretrained, device,
                    decode_batch_size)

    def _load(self, folder: Path | None) -> None:
        from pytorch_pretrained_biggan import BigGAN
        # from_pretrained reads <folder>/config.json + pytorch_model.bin, or downloads the named model
        self.biggan = BigGAN.from_pretrained(str(folder) if folder else self.spec.source).float().cpu()
        cfg = self.biggan.config
        if cfg.num_classes != IMAGENET_CLASSES:
            raise ValueError(f"{folder}: config.json has num_classes={cfg.num_classes}; an ImageNet BigGAN has "
                             f"{IMAGENET_CLASSES}")
        self.noise_dim = cfg.z_dim

    def _sample_noise(self, n: int, rng: torch.Generator | None) -> torch.Tensor:
        return self.truncation * truncated_normal((n, self.noise_dim), 2.0, rng)

    def _generate(self, noise: torch.Tensor, imagenet_labels: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(imagenet_labels, IMAGENET_CLASSES).float()
        return self.biggan(noise, one_hot, self.truncation)


class DiTGenerator(PretrainedGenerator):
    """A diffusers DiT pipeline: the latent is the initial noise of a deterministic DPM-Solver++ sampler."""

    default_decode_batch_size = 16
    DTYPES: ClassVar[dict] = {"auto": None, "float32": torch.float32, "float16": torch.float16,
                              "bfloat16": torch.bfloat16}

    def __init__(self, image_shape, num_classes: int, classes=None, class_map: dict | None = None,
                 guidance_scale: float = 4.0, num_inference_steps: int = 25, truncation: float | None = None,
                 dtype: str = "auto", allow_download: bool = False, pretrained_path: str | None = None,
                 allow_cpu_pretrained: bool = False, device: str = "auto", decode_batch_size: int | None = None):
        config = {"classes": None if classes is None else [str(c) for c in classes], "class_map": class_map,
                  "guidance_scale": guidance_scale, "num_inference_steps": num_inference_steps,
                  "truncation": truncation, "dtype": dtype, "allow_download": allow_download,
                  "pretrained_path": pretrained_path, "allow_cpu_pretrained": allow_cpu_pretrained, "device": device,
                  "decode_batch_size": decode_batch_size}
        super().__init__(image_shape, num_classes, config)
        self.guidance_scale = check_number("guidance_scale", guidance_scale, 1.0, 100.0)   # 1 = no guidance
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) \
                or not 1 <= num_inference_steps <= 1000:
            raise ValueError(f"num_inference_steps={num_inference_steps!r} must be an integer in 1..1000")
        self.num_inference_steps = num_inference_steps
        self.truncation = None if not truncation else check_number("truncation", truncation, 0.0, math.inf,
                                                                   low_open=True)
        if dtype not in self.DTYPES:
            raise ValueError(f"dtype={dtype!r} is unknown; allowed values: {', '.join(self.DTYPES)}")
        # auto: bfloat16 where the GPU does it fast, float32 on a CPU (where bfloat16 is emulated and slower)
        self.dtype = self.DTYPES[dtype] or (torch.bfloat16 if resolve_device(device).type == "cuda" else torch.float32)
        self._setup(classes, class_map, allow_download, pretrained_path, allow_cpu_pretrained, device,
                    decode_batch_size)

    def _load(self, folder: Path | None) -> None:
        from diffusers import DiTPipeline, DPMSolverMultistepScheduler
        if folder is not None:
            pipe = DiTPipeline.from_pretrained(str(folder), local_files_only=True, dtype=self.dtype)
        else:
            pipe = DiTPipeline.from_pretrained(self.spec.source, dtype=self.dtype)
        # submodules, so .to(device), state_dict() and parameter_bytes see them; the scheduler holds no weights
        self.transformer = pipe.transformer
        self.vae = pipe.vae
        # DPM-Solver++ is deterministic (an ODE solver), so a latent always decodes to the same image
        self.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
        cfg = self.transformer.config
        if cfg.num_embeds_ada_norm != IMAGENET_CLASSES:
            raise ValueError(f"{folder or self.spec.source}: the transformer has {cfg.num_embeds_ada_norm} classes; "
                             f"an ImageNet DiT has {IMAGENET_CLASSES}")
        self.noise_shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
        self.noise_dim = math.prod(self.noise_shape)

    def _sample_noise(self, n: int, rng: torch.Generator | None) -> torch.Tensor:
        return truncated_normal((n, self.noise_dim), self.truncation, rng)

    def _generate(self, noise: torch.Tensor, imagenet_labels: torch.Tensor) -> torch.Tensor:
        # The loop of diffusers' DiTPipeline.__call__, which draws its own noise; here the noise is the latent.
        x = noise.reshape(len(noise), *self.noise_shape).to(self.dtype)
        guided = self.guidance_scale > 1
        # DiT's label embedding has one extra row, index 1000, for "no class" (the unconditional branch)
        class_input = torch.cat([imagenet_labels, torch.full_like(imagenet_labels, IMAGENET_CLASSES)]) \
            if guided else imagenet_labels
        channels = self.noise_shape[0]
        self.scheduler.set_timesteps(self.num_inference_steps, device=x.device)
        for t in self.scheduler.timesteps:
            model_input = self.scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            timesteps = t.reshape(1).expand(len(model_input)).to(x.device)
            out = self.transformer(model_input, timestep=timesteps, class_labels=class_input).sample
            eps = out[:, :channels]            # DiT-XL also predicts a variance (channels 4..7), unused here
            if guided:
                cond, uncond = eps.chunk(2)
                eps = uncond + self.guidance_scale * (cond - uncond)
            x = self.scheduler.step(eps, t, x).prev_sample
        return self.vae.decode(x / self.vae.config.scaling_factor).sample


def _family_class(spec: PretrainedSpec) -> type[PretrainedGenerator]:
    base = BigGANGenerator if spec.library == "biggan" else DiTGenerator
    class_name = "".join(part.capitalize() for part in re.split(r"[-_]", spec.name))     # e.g. BigganDeep128
    return type(class_name, (base,), {"spec": spec, "__module__": __name__,
                                      "__doc__": f"`{spec.name}`: {base.__doc__}"})


# One class per name (the registry maps a name to a class); module-level names keep them importable and picklable.
PRETRAINED: dict[str, type[PretrainedGenerator]] = {name: _family_class(spec) for name, spec in SPECS.items()}
globals().update({cls.__name__: cls for cls in PRETRAINED.values()})
