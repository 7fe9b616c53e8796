"""Image-folder datasets: a subfolder per class (e.g. an ImageNet-100 subset), decoded once, resized, cached.

    >>> from synthstudy import data
    >>> splits = data.load("imagefolder", data_root="/data/imagenet100", image_size=64)
    >>> splits.classes[:2]                                    # the folder names, sorted
    ('n01558993', 'n01692333')

Layouts (hidden folders and files with other extensions are ignored):

    <root>/train/<class>/*.jpg  and  <root>/val/<class>/*.jpg (or test/)   the given train / test split
    <root>/<class>/*.jpg                                                    split here: stratified, 20% test, seed 0

Class names are the folder names. Folders named by WordNet id (ImageNet's n01440764 ...) map one-to-one onto the
classes of an ImageNet generator (see `generators.pretrained`). Every image is converted to RGB, scaled so that its
shorter side is `image_size` and centre-cropped to a square, then stored as uint8 like the other datasets.

The root comes from the `data_root` argument, else from $SYNTHSTUDY_IMAGEFOLDER. Decoding tens of thousands of
JPEGs takes minutes, so the decoded splits are cached under `results/cache/imagefolder/<hash>/`; the hash covers
the root, the size and every file's path, byte size and modification time, so a changed folder is decoded again.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ENV_ROOT = "SYNTHSTUDY_IMAGEFOLDER"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
TEST_FOLDERS = ("val", "test")
TEST_FRACTION = 0.2          # of each class, when the folder has no train/val split of its own
DEFAULT_IMAGE_SIZE = 64
CACHE_VERSION = 1            # bump when decoding changes (resize filter, crop), so old caches are not reused


def resolve_root(data_root: str | os.PathLike | None = None) -> Path:
    """The image folder's root: `data_root`, else $SYNTHSTUDY_IMAGEFOLDER; a DataNotFoundError says how to set it."""
    from .data import DataNotFoundError
    given = str(data_root) if data_root else os.environ.get(ENV_ROOT, "")
    if not given:
        raise DataNotFoundError(
            "dataset='imagefolder' needs a folder with a subfolder per class: pass data_root=<folder> or set "
            f"${ENV_ROOT}; layouts: <folder>/train/<class>/*.jpg + <folder>/val/<class>/*.jpg, "
            "or <folder>/<class>/*.jpg")
    root = Path(given).expanduser()
    if not root.is_dir():
        source = "data_root" if data_root else f"${ENV_ROOT}"
        raise DataNotFoundError(f"dataset='imagefolder': {source}={given!r} is not a folder")
    return root


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def _layout(root: Path) -> tuple[Path, Path | None]:
    """(train folder, test folder or None when the split is made here)."""
    if (root / "train").is_dir():
        for name in TEST_FOLDERS:
            if (root / name).is_dir():
                return root / "train", root / name
        from .data import DataNotFoundError
        raise DataNotFoundError(f"dataset='imagefolder': {root} has a train/ folder but no "
                                f"{' or '.join(f'{n}/' for n in TEST_FOLDERS)} folder for the test split")
    return root, None


def _class_files(folder: Path) -> dict[str, list[Path]]:
    from .data import DataNotFoundError
    files = {sub.name: _images(sub) for sub in _subfolders(folder)}
    if not files:
        raise DataNotFoundError(f"dataset='imagefolder': {folder} has no class subfolders")
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise DataNotFoundError(f"dataset='imagefolder': class folder(s) {empty} in {folder} hold no images "
                                f"(extensions {', '.join(IMAGE_EXTENSIONS)})")
    return files


def class_names(data_root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The class names (train folder's subfolders, sorted): cheap, reads no image."""
    train_dir, _ = _layout(resolve_root(data_root))
    return tuple(sub.name for sub in _subfolders(train_dir))


def _split_sizes(counts: list[int]) -> tuple[int, int]:
    """(train, test) sizes of a folder split here: test is `stratified_indices`' exact total."""
    total = sum(counts)
    n_test = round(total * TEST_FRACTION)
    return total - n_test, n_test


def train_size(data_root: str | os.PathLike | None = None) -> int:
    """Images in the train split, counted without decoding (what `config` checks subset sizes against)."""
    train_dir, test_dir = _layout(resolve_root(data_root))
    counts = [len(paths) for paths in _class_files(train_dir).values()]
    return sum(counts) if test_dir is not None else _split_sizes(counts)[0]


def _decode(path: Path, image_size: int) -> np.ndarray:
    from PIL import Image, ImageOps
    with Image.open(path) as img:
        square = ImageOps.fit(img.convert("RGB"), (image_size, image_size), method=Image.Resampling.BICUBIC)
        return np.asarray(square, dtype=np.uint8)


def _decode_all(files: list[tuple[Path, int]], image_size: int):
    from .data import ImageSet
    from .train import cpu_threads
    # PIL releases the GIL while decoding and resizing, so threads use every core without pickling images
    with ThreadPoolExecutor(max_workers=cpu_threads()) as pool:
        arrays = list(pool.map(lambda item: _decode(item[0], image_size), files))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor([label for _, label in files], dtype=torch.int64))


def _fingerprint(files: list[tuple[Path, int]]) -> str:
    h = hashlib.sha256()
    for path, label in files:
        stat = path.stat()
        h.update(f"{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load(data_root: str | os.PathLike | None = None, image_size: int = DEFAULT_IMAGE_SIZE):
    """The folder's train / test `Splits` at image_size x image_size (decoded once, then read from the cache)."""
    from . import runs
    from .data import DataNotFoundError, Splits, stratified_indices
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size={image_size!r} must be an integer >= 8 (pixels per side)")
    root = resolve_root(data_root)
    train_dir, test_dir = _layout(root)
    train_files = _class_files(train_dir)
    classes = tuple(train_files)
    label_of = {name: i for i, name in enumerate(classes)}
    train_list = [(path, label_of[name]) for name, paths in train_files.items() for path in paths]
    if test_dir is not None:
        test_files = _class_files(test_dir)
        if set(test_files) != set(classes):
            raise DataNotFoundError(
                f"dataset='imagefolder': {test_dir} and {train_dir} must hold the same classes; only in test: "
                f"{sorted(set(test_files) - set(classes))}, only in train: {sorted(set(classes) - set(test_files))}")
        test_list = [(path, label_of[name]) for name, paths in test_files.items() for path in paths]
    else:
        labels = np.array([label for _, label in train_list])
        _, n_test = _split_sizes(np.bincount(labels).tolist())
        test_idx = set(stratified_indices(labels, n_test, seed=0).tolist())
        test_list = [item for i, item in enumerate(train_list) if i in test_idx]
        train_list = [item for i, item in enumerate(train_list) if i not in test_idx]
    key = {"version": CACHE_VERSION, "root": str(root.resolve()), "image_size": image_size, "classes": list(classes),
           "train": _fingerprint(train_list), "test": _fingerprint(test_list)}

    def build():
        return Splits("imagefolder", _decode_all(train_list, image_size), _decode_all(test_list, image_size), classes)

    return runs.cached("imagefolder", key, build)
