"""Batch sources: real sets, generator streams and real/synthetic mixes all yield (images, labels) batches."""
import pytest
import torch

from synthstudy import generators, sources
from synthstudy.data import ImageSet


def rng(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pca(digits):
    gen = generators.create("pca_gaussian", (1, 8, 8), 10)
    gen.fit(digits.train, steps=1, seed=0, device="cpu", progress=False)
    return gen


def test_image_set_source_visits_every_image_once_per_epoch():
    images = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10))
    src = sources.ImageSetSource(images)
    seen = torch.cat([src.next_batch(4, rng())[1] for _ in range(5)])   # 20 draws = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))


def test_balanced_labels_are_balanced_and_seeded():
    labels = sources.balanced_labels(25, 10, rng(1))
    counts = torch.bincount(labels, minlength=10)
    assert counts.sum() == 25 and counts.min() == 2 and counts.max() == 3
    assert torch.equal(labels, sources.balanced_labels(25, 10, rng(1)))


def test_generator_stream_gives_fresh_labelled_images(pca):
    stream = sources.GeneratorStream(pca)
    g = rng(0)
    (x1, y1), (x2, _) = stream.next_batch(20, g), stream.next_batch(20, g)
    assert x1.shape == (20, 1, 8, 8) and x1.dtype == torch.float32 and 0 <= x1.min() and x1.max() <= 1
    assert torch.bincount(y1, minlength=10).tolist() == [2] * 10
    assert not torch.equal(x1, x2)                     # a stream never repeats itself
    assert torch.equal(stream.next_batch(20, rng(0))[0], x1)   # but is reproducible from the seed


def test_generator_stream_draws_labels_with_given_class_probs(pca):
    probs = torch.tensor([0.5, 0.3, 0.2] + [0.0] * 7)
    images, labels = sources.GeneratorStream(pca, class_probs=probs).next_batch(4000, rng(0))
    assert images.shape == (4000, 1, 8, 8)
    assert torch.allclose(torch.bincount(labels, minlength=10).double() / 4000, probs.double(), atol=0.03)
    with pytest.raises(ValueError, match="class_probs must be 10 non-negative weights"):
        sources.GeneratorStream(pca, class_probs=torch.ones(3))


class _Marked:
    """A stand-in synthetic source whose images are exactly 0.5 everywhere (real digits never are)."""

    def next_batch(self, n, g):
        return torch.full((n, 1, 8, 8), 0.5), torch.zeros(n, dtype=torch.long)


def _synthetic_count(x):
    return int((x == 0.5).flatten(1).all(1).sum())


@pytest.mark.parametrize("fraction,expected_synthetic", [(0.0, 0), (0.25, 4), (0.5, 8), (1.0, 16)])
def test_mix_replace_takes_the_requested_share_of_the_batch(digits, fraction, expected_synthetic):
    mix = sources.MixSource(sources.ImageSetSource(digits.train), _Marked(), fraction, replace=True)
    x, y = mix.next_batch(16, rng())
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32 and len(y) == 16
    assert _synthetic_count(x) == expected_synthetic


@pytest.mark.parametrize("fraction,expected_synthetic", [(0.0, 0), (0.2, 4), (0.5, 16), (0.75, 48)])
def test_mix_adds_synthetic_images_to_the_whole_real_batch(digits, fraction, expected_synthetic):
    x, y = sources.MixSource(sources.ImageSetSource(digits.train), _Marked(), fraction).next_batch(16, rng())
    assert x.shape == (16 + expected_synthetic, 1, 8, 8) and len(y) == len(x)
    assert _synthetic_count(x) == expected_synthetic        # the real arm's 16 real images are all there
    assert expected_synthetic / len(x) == pytest.approx(fraction)


def test_mix_source_refuses_fractions_outside_its_range(digits, pca):
    real, stream = sources.ImageSetSource(digits.train), sources.GeneratorStream(pca)
    with pytest.raises(ValueError, match="synthetic_fraction"):
        sources.MixSource(real, stream, 1.5, replace=True)
    with pytest.raises(ValueError, match="infinitely many"):
        sources.MixSource(real, stream, 1.0)


def test_sample_pool_is_uint8_balanced_and_reproducible(pca):
    pool = generators.sample_pool(pca, 30, seed=0, batch_size=7)
    assert pool.images.dtype == torch.uint8 and pool.images.shape == (30, 1, 8, 8)
    assert torch.bincount(pool.labels, minlength=10).tolist() == [3] * 10
    assert torch.equal(pool.images, generators.sample_pool(pca, 30, seed=0).images)
    with pytest.raises(ValueError, match="pool size"):
        generators.sample_pool(pca, 0, seed=0)


class CountingGenerator:
    """A stand-in generator that draws noise images and counts how many it was asked for."""

    num_classes = 10
    image_shape = (1, 28, 28)

    def __init__(self):
        self.drawn = 0

    def to(self, device):
        return self

    def sample(self, labels, rng=None):
        self.drawn += len(labels)
        return torch.rand(len(labels), *self.image_shape, generator=rng)


@pytest.mark.parametrize("arm", ["pool", "stream"])
def test_pool_cas_draws_a_pool_once_or_fresh_images_every_batch(arm):
    from synthstudy import cells, config
    params = config.load_profile("smoke")
    ctx = cells.context(params["dataset"], params["val_size"])
    gen = CountingGenerator()
    scored = cells.pool_cas(gen, ctx, params, seed=0, device="cpu", arm=arm)
    steps = cells.profile_steps(params, len(ctx.pool))
    # the pool arm samples as many images as the real pool once; the stream arm steps x batch, none seen twice
    assert gen.drawn == (len(ctx.pool) if arm == "pool" else steps * params["batch_size"])
    assert 0 <= scored["val_accuracy"] <= 1


def test_pool_cas_refuses_an_unknown_arm_before_any_compute():
    from synthstudy import cells, config
    params = config.load_profile("smoke")
    gen = CountingGenerator()
    with pytest.raises(ValueError, match="arm='mix': allowed: 'pool', 'stream'"):
        cells.pool_cas(gen, None, params, seed=0, device="cpu", arm="mix")
    assert gen.drawn == 0


def test_a_cell_key_with_gen_config_trains_on_the_generator_so_configured(isolated_results):
    from synthstudy import cells, config
    values = {k: v for k, v in config.load_profile("smoke").items() if k in config.GeneratorsParams.model_fields}
    params = config.validate(config.GeneratorsParams, {**values, "profile": "smoke", "cas_arm": "stream",
                                                       "zoo_overrides": {"flow": {"guidance": 1.0}}})
    key = next(k for k in cells.cas_keys(params) if k["generator"] == "flow")
    stream, _ = cells.batch_source(key, device="cpu")
    assert stream.model.config["guidance"] == 1.0 and stream.model.evaluations_per_sample() == 8   # unguided
    plain = next(k for k in cells.cas_keys(config.validate(config.GeneratorsParams, {
        **values, "profile": "smoke", "cas_arm": "stream"})) if k["generator"] == "flow")
    assert cells.batch_source(plain, device="cpu")[0].model.config["guidance"] == 1.5         # the default
    assert stream.model.config["guidance"] == 1.0             # two models: the first one's sampler is kept
