"""`pca_gaussian`: a per-class Gaussian in PCA space, the cheapest generator of the study (fits in seconds).

PCA is fitted on all training images in [0, 1] (flattened); each image becomes `n_components` coefficients. Every
class gets the mean and covariance of its coefficients; the covariance is shrunk towards the pooled within-class
covariance (`shrinkage`), because a class with fewer images than components has a singular covariance. A latent is
a standard normal vector z; the image is  mean + components^T (class_mean + L_c z)  with L_c the class's Cholesky
factor, clamped to [0, 1]. Decoding is linear in z, so nearby latents give nearby images.

    >>> gen = generators.create("pca_gaussian", (1, 28, 28), 10, n_components=64)
    >>> gen.fit(train, steps=1, seed=0)      # no gradient steps: `steps` and `seed` are recorded but unused
    >>> gen.sample(torch.tensor([3, 3, 7]))

The fit is deterministic (no randomness at all), so two seeds give the same model; sampling is seeded by the
`generator` passed to `sample`.
"""
from __future__ import annotations

import torch

from ..data import ImageSet
from ..train import check_positive
from .base import Generator, check_number


class PCAGaussian(Generator):
    family = "pca_gaussian"

    def __init__(self, image_shape, num_classes: int, n_components: int = 64, shrinkage: float = 0.1,
                 batch_size: int = 4096):
        check_positive("n_components", n_components)
        check_number("shrinkage", shrinkage, 0.0, 1.0)
        check_positive("batch_size", batch_size)
        super().__init__(image_shape, num_classes,
                         dict(n_components=n_components, shrinkage=shrinkage, batch_size=batch_size))
        c, h, w = self.image_shape
        self.dim = c * h * w
        # more components than pixels would be meaningless; the buffers' shapes are fixed here so that
        # `load_state_dict` works on a freshly created object
        self.latent_dim = min(n_components, self.dim)
        self._build()

    def _build(self) -> None:
        k, d, n = self.latent_dim, self.dim, self.num_classes
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.zeros(k, d))        # rows: principal directions
        self.register_buffer("explained_variance", torch.zeros(k))
        self.register_buffer("class_mean", torch.zeros(n, k))         # in PCA coefficients
        self.register_buffer("class_chol", torch.zeros(n, k, k))      # Cholesky factor of each class covariance

    def _fit(self, train: ImageSet, steps, batch_size, device, rng, progress) -> dict:
        k, n_cls = self.latent_dim, self.num_classes
        # float64 moments, accumulated in chunks: 60k x 784 floats would otherwise be a 375 MB copy
        total = torch.zeros(self.dim, dtype=torch.float64, device=device)
        for i in range(0, len(train), batch_size):
            total += train.images[i:i + batch_size].flatten(1).double().sum(0)
        mean = total / (255 * len(train))
        scatter = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=device)
        for i in range(0, len(train), batch_size):
            x = train.images[i:i + batch_size].flatten(1).double().div(255) - mean
            scatter += x.T @ x
        evals, evecs = torch.linalg.eigh(scatter / max(1, len(train) - 1))   # ascending order
        comps = evecs[:, -k:].flip(1).T.contiguous()                        # (k, D), largest variance first
        # the sign of an eigenvector is arbitrary; fix it (largest |entry| positive) so fits are reproducible
        sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
        comps = comps * sign

        coef_sum = torch.zeros(n_cls, k, dtype=torch.float64, device=device)
        coef_sq = torch.zeros(n_cls, k, k, dtype=torch.float64, device=device)
        counts = torch.bincount(train.labels, minlength=n_cls).double()
        for i in range(0, len(train), batch_size):
            x = train.images[i:i + batch_size].flatten(1).double().div(255) - mean
            y = train.labels[i:i + batch_size]
            coef = x @ comps.T
            coef_sum.index_add_(0, y, coef)
            coef_sq.index_add_(0, y, coef[:, :, None] * coef[:, None, :])
        class_mean = coef_sum / counts[:, None]
        scatter_c = coef_sq - counts[:, None, None] * class_mean[:, :, None] * class_mean[:, None, :]
        class_cov = scatter_c / (counts - 1).clamp(min=1)[:, None, None]
        pooled = scatter_c.sum(0) / max(1, len(train) - n_cls)
        lam = self.config["shrinkage"]
        # a class seen once has no covariance of its own: it borrows the pooled one entirely
        lam_c = torch.where(counts > 1, torch.full_like(counts, lam), torch.ones_like(counts))[:, None, None]
        cov = (1 - lam_c) * class_cov + lam_c * pooled
        # jitter relative to the overall scale keeps the Cholesky factorisation defined for rank-deficient data
        jitter = 1e-6 * max(float(evals[-1]), 1e-12)
        chol = torch.linalg.cholesky(cov + jitter * torch.eye(k, dtype=cov.dtype, device=device))

        self.mean.copy_(mean.float())
        self.components.copy_(comps.float())
        self.explained_variance.copy_(evals[-k:].flip(0).clamp(min=0).float())
        self.class_mean.copy_(class_mean.float())
        self.class_chol.copy_(chol.float())
        ratio = float(evals[-k:].clamp(min=0).sum() / evals.clamp(min=0).sum().clamp(min=1e-12))
        return {"explained_variance_ratio": ratio, "n_components": k, "losses": []}

    def sample_latents(self, labels, rng=None) -> torch.Tensor:
        labels = self.check_labels(labels)
        return torch.randn(len(labels), self.latent_dim, generator=rng)

    def _decode(self, z, labels):
        coef = self.class_mean[labels] + torch.einsum("bij,bj->bi", self.class_chol[labels], z)
        x = self.mean + coef @ self.components
        return x.view(len(labels), *self.image_shape)
