"""Datasets, splits and stratified subsets: the only place that reads real images.

Every dataset comes back as a `Splits` of uint8 image tensors (N, C, H, W) and int64 labels. The test split is
only for final evaluation: generators, model selection and validation use `holdout()` carved from train.

    >>> from synthstudy import data
    >>> splits = data.load("fashion_mnist")          # offline, from the Debian package or $SYNTHSTUDY_DATA
    >>> pool, val = data.holdout(splits.train, val_size=5000, seed=0)
    >>> idx = data.stratified_indices(pool.labels, n=1000, seed=0)   # save `idx` with the run

Datasets: `fashion_mnist` (default, 28x28 grey), `digits` (scikit-learn's 8x8 digits, tiny, for tests and smoke
runs), `cifar10` (torchvision; only when the caller passes `allow_download=True`), `imagefolder` (a subfolder per
class, e.g. an ImageNet-100 subset, resized to `image_size`; see `synthstudy.imagefolder`).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("fashion_mnist", "digits", "cifar10", "imagefolder")

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DIGITS_CLASSES = tuple(str(i) for i in range(10))
# What is known about each built-in dataset without loading it, so `config` refuses an impossible parameter (an N
# larger than the train split, a class index that does not exist) before anything runs. An image folder's
# facts are counted on disk instead (`imagefolder.train_size`, `imagefolder.class_names`).
CLASSES = {"fashion_mnist": FASHION_MNIST_CLASSES, "digits": DIGITS_CLASSES, "cifar10": CIFAR10_CLASSES}
IMAGE_SHAPES = {"fashion_mnist": (1, 28, 28), "digits": (1, 8, 8), "cifar10": (3, 32, 32)}
TRAIN_SIZES = {"fashion_mnist": 60000, "digits": 1348, "cifar10": 50000}   # digits: 1,797 less its 25% test split
# Whether a horizontal mirror keeps an image's class (contrastive view augmentation): digits are not
# mirror-symmetric; clothes, CIFAR's objects and photos are.
FLIPS_KEEP_CLASS = {"fashion_mnist": True, "cifar10": True, "digits": False, "imagefolder": True}


def nominal_image_shape(dataset: str, image_size: int) -> tuple:
    """(C, H, W) of a dataset's images without loading it: an image folder's are RGB image_size x image_size."""
    return IMAGE_SHAPES.get(dataset, (3, image_size, image_size))


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are missing; the message says every way to get them."""


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 (N, C, H, W) in [0, 255] and labels as int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices) -> ImageSet:
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[idx], self.labels[idx])


@dataclass(frozen=True)
class Splits:
    """A dataset: its train and test splits plus what models need to know about it."""

    name: str
    train: ImageSet
    test: ImageSet
    classes: tuple

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train.images.shape[1:])

    def normalization(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std of the train split in [0, 1] units (never the test split)."""
        x = self.train.images.float().div_(255)
        return x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))


def fashion_mnist_search_path() -> list[Path]:
    """Folders searched for the Fashion-MNIST IDX files, in order."""
    paths = []
    if os.environ.get("SYNTHSTUDY_DATA"):
        paths.append(Path(os.environ["SYNTHSTUDY_DATA"]))
    paths += [Path("/usr/share/datasets/fashion-mnist"), Path(__file__).resolve().parent.parent / "data"]
    return paths


def _read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the MNIST format: magic, dims, big-endian sizes, then uint8 data)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _load_fashion_mnist() -> Splits:
    for folder in fashion_mnist_search_path():
        if all((folder / f).is_file() for f in FASHION_MNIST_FILES.values()):
            arr = {k: _read_idx(folder / f) for k, f in FASHION_MNIST_FILES.items()}
            def to_set(split, arr=arr):
                return ImageSet(torch.from_numpy(arr[f"{split}_images"].copy()).unsqueeze(1),
                                torch.from_numpy(arr[f"{split}_labels"].astype(np.int64)))
            return Splits("fashion_mnist", to_set("train"), to_set("test"), FASHION_MNIST_CLASSES)
    searched = "\n".join(f"  - {p}" for p in fashion_mnist_search_path())
    raise DataNotFoundError(
        "dataset='fashion_mnist': the four IDX .gz files "
        f"({', '.join(FASHION_MNIST_FILES.values())}) were not found in:\n{searched}\n"
        "Get them one of three ways:\n"
        "  1. `make data` (as root: apt-get install dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist)\n"
        "  2. set SYNTHSTUDY_DATA to a folder holding the four files\n"
        "  3. copy the four files into ./data in the project root")


def _load_digits(test_fraction: float = 0.25, seed: int = 0) -> Splits:
    """scikit-learn's 8x8 digits (values 0..16) rescaled to uint8, split stratified 75/25 with a fixed seed."""
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = torch.from_numpy(np.round(bunch.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    full = ImageSet(images, labels)
    n_test = int(round(len(full) * test_fraction))
    test_idx = stratified_indices(labels, n_test, seed)
    train_idx = np.setdiff1d(np.arange(len(full)), test_idx)
    return Splits("digits", full.take(train_idx), full.take(test_idx), DIGITS_CLASSES)


def _load_cifar10(allow_download: bool) -> Splits:
    import torchvision
    root = Path(os.environ.get("SYNTHSTUDY_DATA", Path(__file__).resolve().parent.parent / "data"))
    try:
        sets = {train: torchvision.datasets.CIFAR10(root, train=train, download=allow_download)
                for train in (True, False)}
    except RuntimeError as err:  # torchvision says "Dataset not found or corrupted"
        raise DataNotFoundError(
            f"dataset='cifar10' was not found under {root}: pass allow_download=True (needs internet) "
            "or place torchvision's cifar-10-batches-py folder there") from err
    def to_set(ds):
        return ImageSet(torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
                        torch.as_tensor(ds.targets, dtype=torch.int64))
    return Splits("cifar10", to_set(sets[True]), to_set(sets[False]), CIFAR10_CLASSES)


def load(name: str = "fashion_mnist", allow_download: bool = False, data_root: str | None = None,
         image_size: int | None = None) -> Splits:
    """Load a dataset by name; never downloads unless `allow_download` is True (cifar10 only).

    `data_root` and `image_size` are for `imagefolder` only (root default $SYNTHSTUDY_IMAGEFOLDER, size 64).
    """
    if name == "imagefolder":
        from . import imagefolder
        return imagefolder.load(data_root, imagefolder.DEFAULT_IMAGE_SIZE if image_size is None else image_size)
    if name == "fashion_mnist":
        return _load_fashion_mnist()
    if name == "digits":
        return _load_digits()
    if name == "cifar10":
        return _load_cifar10(allow_download)
    raise ValueError(f"dataset={name!r} is unknown; allowed values: {', '.join(DATASETS)}")


def class_names(name: str, data_root: str | None = None) -> tuple:
    """A dataset's class names, in label order, without loading its images (an image folder's are its folders)."""
    if name == "imagefolder":
        from . import imagefolder
        return imagefolder.class_names(data_root)
    return CLASSES[_check_name(name)]


def train_size(name: str, data_root: str | None = None) -> int:
    """Images in a dataset's train split, without loading it (an image folder's are counted, not decoded)."""
    if name == "imagefolder":
        from . import imagefolder
        return imagefolder.train_size(data_root)
    return TRAIN_SIZES[_check_name(name)]


def _check_name(name: str) -> str:
    """A built-in dataset's name (an image folder is handled by the caller), else a ValueError naming them all."""
    if name not in CLASSES:
        raise ValueError(f"dataset={name!r} is unknown; allowed values: {', '.join(DATASETS)}")
    return name


def stratified_indices(labels, n: int, seed: int) -> np.ndarray:
    """`n` indices into `labels`, class proportions kept (largest-remainder rounding), chosen by `seed`.

    The result is sorted, so the same (labels, n, seed) always gives the same array; save it with the run.
    """
    labels = np.asarray(labels)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"subset size n={n!r} must be a positive integer")
    if n > len(labels):
        raise ValueError(f"subset size n={n} is larger than the split it is drawn from ({len(labels)} images); "
                         f"allowed: 1..{len(labels)}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n / len(labels))
    take = np.floor(exact).astype(int)
    # hand the remaining images to the classes with the largest remainders (ties broken by the seed)
    order = np.lexsort((rng.random(len(classes)), -(exact - take)))
    take[order[: n - take.sum()]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def holdout(train: ImageSet, val_size: int, seed: int = 0) -> tuple[ImageSet, ImageSet | None]:
    """Split train into (pool, validation). Model selection uses validation; the test split stays unseen.

    `val_size=0` returns (train, None): for fixed recipes that select nothing.
    """
    if val_size == 0:
        return train, None
    if not isinstance(val_size, (int, np.integer)) or not 0 < val_size < len(train):
        raise ValueError(f"val_size={val_size!r} must be an integer in 0..{len(train) - 1}")
    val_idx = stratified_indices(train.labels.numpy(), val_size, seed)
    pool_idx = np.setdiff1d(np.arange(len(train)), val_idx)
    return train.take(pool_idx), train.take(val_idx)
