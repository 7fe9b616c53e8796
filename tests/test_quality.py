"""Quality metrics in the domain feature space: the extractor is frozen and cached, the distances order the
obvious cases correctly, and CAS trains only on synthetic data."""
import pytest
import torch

from synthstudy import data, generators, quality, sources, train
from synthstudy.data import ImageSet


@pytest.fixture(scope="module")
def extractor(digits, tmp_path_factory):
    # module-scoped: build it once (a few seconds); the cache test below builds its own
    return quality.domain_extractor(digits.train, "digits", steps=40, augment="crop", device="cpu", progress=False)


def noise_like(split: ImageSet, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(torch.randint(0, 256, split.images.shape, generator=g, dtype=torch.uint8), split.labels)


def test_extractor_is_frozen_and_gives_fixed_size_features(extractor, digits):
    f = extractor.embed(digits.test.images[:50])
    assert f.shape == (50, extractor.num_features) and f.dtype == torch.float32
    assert not any(p.requires_grad for p in extractor.parameters())
    # uint8 and the same images as float [0, 1] embed identically
    assert torch.allclose(f, extractor.embed(digits.test.images[:50].float() / 255), atol=1e-5)


def test_extractor_is_cached_by_its_inputs(digits, isolated_results):
    small = digits.train.take(data.stratified_indices(digits.train.labels.numpy(), 200, seed=0))
    a = quality.domain_extractor(small, "digits", steps=3, augment="crop", device="cpu", progress=False)
    b = quality.domain_extractor(small, "digits", steps=3, augment="crop", device="cpu", progress=False)
    x = small.images[:8]
    assert torch.equal(a.embed(x), b.embed(x))
    assert len(list((isolated_results / "cache" / "extractors").iterdir())) == 1
    quality.domain_extractor(small, "digits", steps=4, augment="crop", device="cpu", progress=False)
    assert len(list((isolated_results / "cache" / "extractors").iterdir())) == 2


def test_fid_kid_prdc_separate_real_from_noise(extractor, digits):
    train_f, test_f = extractor.embed(digits.train.images), extractor.embed(digits.test.images)
    noise_f = extractor.embed(noise_like(digits.test).images)
    assert quality.fid(train_f, test_f) * 10 < quality.fid(train_f, noise_f)
    assert quality.kid(train_f, test_f)[0] * 10 < quality.kid(train_f, noise_f)[0]
    real, fake = quality.prdc(train_f, test_f), quality.prdc(train_f, noise_f)
    assert set(real) == {"precision", "recall", "density", "coverage"}
    assert real["recall"] > 0.5 > fake["recall"] and real["coverage"] > 0.5 > fake["coverage"]


def test_fid_and_kid_take_features_as_they_are(extractor, digits):
    """No uint8 round-trip: FID is invariant to shifting both sets (a byte cast would clip negative features and
    wrap large ones), and KID of features far below 1 is not rounded to 0."""
    a, b = extractor.embed(digits.train.images), extractor.embed(digits.test.images)
    assert quality.fid(a - 100, b - 100) == pytest.approx(quality.fid(a, b), rel=1e-4)
    assert quality.fid(a * 1e-3, b * 1e-3) == pytest.approx(quality.fid(a, b) * 1e-6, rel=1e-3)
    assert quality.kid(a * 1e-3, b * 1e-3)[0] != 0.0


def test_extractor_reports_its_validation_accuracy(digits):
    small = digits.train.take(data.stratified_indices(digits.train.labels.numpy(), 600, seed=0))
    ex = quality.domain_extractor(small, "digits", steps=60, augment="crop", device="cpu", progress=False,
                                  val=digits.test)
    assert 0.8 < ex.val_accuracy <= 1 and len(ex.train_losses) > 0          # measured: 0.93
    assert quality.domain_extractor(small, "digits", steps=60, augment="crop", device="cpu",
                                    progress=False).val_accuracy is None      # a measurement, not cached


def test_contrastive_extractor_is_a_second_cached_space(digits, isolated_results):
    small = digits.train.take(data.stratified_indices(digits.train.labels.numpy(), 300, seed=0))
    a = quality.contrastive_extractor(small, "digits", steps=5, batch_size=32, device="cpu", progress=False)
    b = quality.contrastive_extractor(small, "digits", steps=5, batch_size=32, device="cpu", progress=False)
    x = small.images[:16]
    f = a.embed(x)
    assert f.shape == (16, a.num_features) and torch.equal(f, b.embed(x))
    assert a.key["kind"] == "simclr" and not any(p.requires_grad for p in a.parameters())
    assert quality.fid(a.embed(small.images), b.embed(digits.test.images)) >= 0


def test_fid_of_identical_sets_is_zero(extractor, digits):
    f = extractor.embed(digits.test.images)
    assert abs(quality.fid(f, f)) < 1e-3


def test_sample_quality_reports_overall_and_per_class(extractor, digits):
    out = quality.sample_quality(extractor, digits.test, noise_like(digits.test))
    assert {"fid", "kid", "precision", "recall", "density", "coverage", "per_class"} <= set(out)
    assert sorted(out["per_class"]) == list(range(10))
    with pytest.raises(ValueError, match="nearest_k"):
        quality.sample_quality(extractor, digits.test.take(range(5)), digits.test.take(range(5)))


def test_cas_learns_from_a_good_generator_and_not_from_noise(digits):
    """A per-class Gaussian of digits is a usable data source (CAS well above chance); a source of pure noise
    with the same labels is not (near chance)."""
    gen = generators.create("pca_gaussian", (1, 8, 8), 10)
    gen.fit(digits.train, steps=1, seed=0, device="cpu", progress=False)
    cfg = train.TrainConfig(steps=60, batch_size=64, augment="crop", tta="none", seed=0, device="cpu",
                            progress=False)
    good = quality.cas(sources.GeneratorStream(gen), digits.test, cfg)
    bad = quality.cas(sources.ImageSetSource(noise_like(digits.train)), digits.test, cfg)
    assert good["cas"] > 0.6 and bad["cas"] < 0.3
    assert len(good["per_class_cas"]) == 10
