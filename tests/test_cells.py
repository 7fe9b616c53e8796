"""The grid cells' small helpers (the cells themselves run in the notebooks' smoke tests)."""
import torch

from synthstudy import cells
from synthstudy.data import ImageSet


def test_the_sample_grid_is_class_by_class_and_refuses_a_missing_class():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2])
    images = ImageSet(torch.arange(9, dtype=torch.uint8).view(9, 1, 1, 1).expand(9, 1, 2, 2).clone(), labels)
    grid = cells.sample_grid(images, num_classes=3, rows=2)
    # the first two of class 0 (positions 1, 3), then class 1's (2, 5), then class 2's (0, 4): one figure row each
    assert grid.dtype.name == "uint8" and grid[:, 0, 0, 0].tolist() == [1, 3, 2, 5, 0, 4]
    assert cells.sample_grid(images, num_classes=3, rows=8).shape[0] == 9         # 3 per class: as many as each has
    assert cells.sample_grid(images, num_classes=4) is None                       # class 3 drew no sample
