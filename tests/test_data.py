import gzip

import numpy as np
import pytest
import torch
from conftest import needs_fashion_mnist

from synthstudy import data


def test_digits_splits_are_uint8_nchw_and_disjoint(digits):
    assert digits.image_shape == (1, 8, 8)
    assert digits.train.images.dtype == torch.uint8 and digits.train.images.max() > 200
    assert len(digits.train) == 1348 and len(digits.test) == 449
    assert digits.num_classes == 10
    # no test image also appears in train (split by index, so exact duplicates only if the data has them)
    train_rows = {bytes(x) for x in digits.train.images.numpy().reshape(len(digits.train), -1)}
    overlap = sum(bytes(x) in train_rows for x in digits.test.images.numpy().reshape(len(digits.test), -1))
    assert overlap < 5


@needs_fashion_mnist
def test_fashion_mnist_has_the_published_sizes():
    s = data.load("fashion_mnist")
    assert (len(s.train), len(s.test), s.image_shape) == (60000, 10000, (1, 28, 28))
    assert torch.bincount(s.train.labels).tolist() == [6000] * 10
    assert data.train_size("fashion_mnist") == len(s.train) and data.class_names("fashion_mnist") == s.classes


def test_the_facts_known_without_loading_match_the_loaded_data(digits):
    """`config` checks parameters against these facts before anything is loaded: they must be the data's."""
    assert data.train_size("digits") == len(digits.train) and data.class_names("digits") == digits.classes
    assert set(data.CLASSES) == set(data.TRAIN_SIZES) == set(data.DATASETS) - {"imagefolder"}
    with pytest.raises(ValueError, match="allowed values: fashion_mnist"):
        data.train_size("mnist")


def test_fashion_mnist_reads_idx_from_env_folder(tmp_path, monkeypatch):
    """Write four tiny IDX files and point SYNTHSTUDY_DATA at them: the reader must decode them exactly."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 20), ("t10k", 10)):
        imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        with gzip.open(tmp_path / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + np.array([n, 28, 28], ">u4").tobytes() + imgs.tobytes())
        with gzip.open(tmp_path / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes() + labels.tobytes())
        if split == "train":
            expected = imgs
    monkeypatch.setenv("SYNTHSTUDY_DATA", str(tmp_path))
    s = data.load("fashion_mnist")
    assert len(s.train) == 20 and len(s.test) == 10
    assert np.array_equal(s.train.images[:, 0].numpy(), expected)


def test_missing_fashion_mnist_says_the_three_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHSTUDY_DATA", str(tmp_path))
    monkeypatch.setattr(data, "fashion_mnist_search_path", lambda: [tmp_path])
    with pytest.raises(data.DataNotFoundError) as err:
        data.load("fashion_mnist")
    msg = str(err.value)
    assert "make data" in msg and "SYNTHSTUDY_DATA" in msg and "./data" in msg


def test_unknown_dataset_names_allowed_values():
    with pytest.raises(ValueError, match="fashion_mnist, digits, cifar10"):
        data.load("mnist")


def test_cifar10_never_downloads_unasked(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHSTUDY_DATA", str(tmp_path))
    with pytest.raises(data.DataNotFoundError, match="allow_download"):
        data.load("cifar10")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("n", [10, 37, 100, 1000])
def test_stratified_indices_keep_class_proportions(digits, n):
    labels = digits.train.labels.numpy()
    idx = data.stratified_indices(labels, n, seed=3)
    assert len(idx) == n == len(set(idx.tolist()))
    expected = np.bincount(labels) * n / len(labels)
    assert np.all(np.abs(np.bincount(labels[idx], minlength=10) - expected) < 1)


def test_stratified_indices_are_seeded(digits):
    labels = digits.train.labels.numpy()
    a, b, c = (data.stratified_indices(labels, 100, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("n", [0, -5, 1349, 2.5])
def test_impossible_subset_sizes_are_refused(digits, n):
    with pytest.raises(ValueError, match="n="):
        data.stratified_indices(digits.train.labels.numpy(), n, seed=0)


def test_holdout_is_disjoint_and_complete(digits):
    pool, val = data.holdout(digits.train, 200, seed=0)
    assert len(pool) + len(val) == len(digits.train) and len(val) == 200
    assert data.holdout(digits.train, 0)[1] is None
    with pytest.raises(ValueError, match="val_size"):
        data.holdout(digits.train, len(digits.train))
