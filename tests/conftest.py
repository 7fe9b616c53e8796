"""Shared fixtures: small real data (scikit-learn digits ships with the package) and an isolated results root."""
import pytest
import torch

from synthstudy import data


@pytest.fixture(scope="session")
def digits():
    return data.load("digits")


@pytest.fixture(autouse=True)
def isolated_results(tmp_path, monkeypatch):
    """Every test writes run records into its own temporary folder, never into the repo's results/."""
    monkeypatch.setenv("SYNTHSTUDY_RESULTS", str(tmp_path / "results"))
    torch.set_num_threads(2)
    return tmp_path / "results"


def fashion_mnist_available() -> bool:
    try:
        data.load("fashion_mnist")
    except data.DataNotFoundError:
        return False
    return True


needs_fashion_mnist = pytest.mark.skipif(not fashion_mnist_available(),
                                         reason="Fashion-MNIST not installed (make data)")
