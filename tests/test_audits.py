"""The audits catch what they claim to catch: a generator that returns its training images is flagged (copy rate
~1, attack AUC ~1), fresh samples of a smooth model are not; the imbalanced subset is exactly what was asked for;
bad parameters are refused with the parameter's name and the allowed values."""
import numpy as np
import pandas as pd
import pytest
import torch

from synthstudy import config, data, generators
from synthstudy.audits import bias, privacy


# ---------------------------------------------------------------- constructed generators
class Copier:
    """A "generator" that hands back random training images of the requested class."""

    def __init__(self, train: data.ImageSet, num_classes: int = 10):
        self.train, self.num_classes = train, num_classes

    def sample(self, labels, generator=None):
        out = []
        for y in labels.tolist():
            pool = torch.nonzero(self.train.labels == y).flatten()
            out.append(self.train.images[pool[torch.randint(len(pool), (1,), generator=generator)]])
        return torch.cat(out).float() / 255


class ClassMeanNoise:
    """A smooth model that never saw an individual image: class mean + Gaussian pixel noise."""

    def __init__(self, train: data.ImageSet, num_classes: int = 10, noise: float = 0.15):
        self.means = torch.stack([train.images[train.labels == c].float().mean(0) / 255 for c in range(num_classes)])
        self.num_classes, self.noise = num_classes, noise

    def sample(self, labels, generator=None):
        x = self.means[labels]
        return (x + self.noise * torch.randn(x.shape, generator=generator)).clamp(0, 1)


class Encoded:
    """Images that encode their class as a brightness level; `collapse` maps those classes to class 9's look."""

    def __init__(self, num_classes: int = 10, collapse=()):
        self.num_classes, self.collapse = num_classes, set(collapse)

    def sample(self, labels, generator=None):
        shown = torch.tensor([9 if int(y) in self.collapse else int(y) for y in labels])
        return (shown.float() / 10 + 0.05)[:, None, None, None].expand(-1, 1, 8, 8).clone()


def decode_level(images):
    return (images.float().flatten(1).mean(1) * 10).floor().long().clamp(0, 9)


@pytest.fixture(scope="module")
def members(digits):
    """300 stratified digits as the generator's training set, and as many held-out digits (same class counts)."""
    pool = digits.train
    idx = data.stratified_indices(pool.labels.numpy(), 300, seed=0)
    held = privacy.heldout_indices(pool.labels, idx, seed=0)
    return pool.take(idx), pool.take(held)


def audit_of(gen, train, heldout, embed=None, count=1200, seed=0):
    x = privacy.generate(gen, privacy.labels_like(train.labels, count, seed=seed), seed=seed)
    return privacy.audit(x, train.images, heldout.images, embed=embed)


# ---------------------------------------------------------------- privacy
def test_generator_returning_training_images_is_caught(members):
    train, heldout = members
    pixel = audit_of(Copier(train), train, heldout).summary()
    # 1200 draws from 300 images cover ~98% of them: nearly every member has a sample at distance 0
    assert pixel["copy_rate"] == pytest.approx(1.0) and pixel["mia_auc"] > 0.97
    assert pixel["d_train_median"] < 1e-2 and pixel["ratio_median"] < 1e-2 and pixel["closer_to_train"] == 1.0
    # the same in a feature space (any fixed map): copies stay copies
    weights = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    feature = audit_of(Copier(train), train, heldout, embed=lambda x: privacy.as_features(x) @ weights)
    assert feature.space == "feature"
    assert feature.copy_rate == pytest.approx(1.0) and feature.mia_auc > 0.97


@pytest.mark.parametrize("smooth", ["pca_gaussian", "class_mean_noise"])
def test_fresh_samples_of_a_smooth_model_score_lower(members, smooth):
    train, heldout = members
    if smooth == "pca_gaussian":
        gen = generators.create("pca_gaussian", (1, 8, 8), 10, n_components=16)
        gen.fit(train, steps=1, seed=0, device="cpu", progress=False)
    else:
        gen = ClassMeanNoise(train)
    report = audit_of(gen, train, heldout)
    s = report.summary()
    # measured: pca_gaussian copy 0.04, AUC 0.59; noise copy 0.00, AUC 0.54 (a copier: 1.0 and 1.0)
    assert s["copy_rate"] < 0.2 and s["mia_auc"] < 0.75
    assert 0.5 < s["ratio_median"] < 1.2
    assert report.threshold > 0 and s["members"] == s["nonmembers"] == 300 and s["samples"] == 1200


def test_copy_threshold_is_the_stated_quantile_of_leave_one_out_distances(members):
    train, heldout = members
    report = audit_of(ClassMeanNoise(train), train, heldout, count=200)
    brute = torch.cdist(privacy.as_features(train.images), privacy.as_features(train.images))
    brute.fill_diagonal_(float("inf"))
    assert torch.allclose(report.train_nn, brute.min(1).values, atol=1e-3)
    assert report.threshold == pytest.approx(float(torch.quantile(brute.min(1).values.double(), 0.05)), abs=1e-3)
    # fresh real images (the held-out set itself, as "samples") are flagged at about the quantile's rate
    real = privacy.audit(heldout.images, train.images, heldout.images)
    assert real.d_heldout.max() < 1e-2                     # each is its own nearest held-out neighbour
    assert real.copy_rate < 0.15


def test_a_larger_training_set_is_audited_whole_and_compared_at_equal_size(digits, members):
    """The generator of the whole pool: every sample is checked against all its training images, the ratio against
    an equally large part of them (else more references alone would make samples look nearer the training set)."""
    train, _ = members
    pool = digits.train
    big = data.stratified_indices(pool.labels.numpy(), 900, seed=0)
    held = pool.take(np.setdiff1d(np.arange(len(pool)), big)[:150])
    big_train = pool.take(big)
    fresh = audit_of(ClassMeanNoise(big_train), big_train, held, count=600).summary()
    assert 0.85 < fresh["ratio_median"] < 1.15 and fresh["members"] == 900 and fresh["nonmembers"] == 150
    copier = audit_of(Copier(big_train), big_train, held, count=600)
    assert copier.copy_rate == pytest.approx(1.0)               # found among all 900, not only a part
    # few samples per member: the attack can only be as strong as a random copier with as many samples
    assert copier.mia_auc == pytest.approx(privacy.copier_auc(600, 900), abs=0.05)
    assert privacy.copier_auc(3 * 900, 900) == pytest.approx(0.975, abs=1e-3)
    # the leave-one-out threshold from a subset of queries is close to the one from all of them
    x = privacy.generate(ClassMeanNoise(big_train), privacy.labels_like(big_train.labels, 100, 0), 0)
    part = privacy.audit(x, big_train.images, held.images, loo_queries=300)
    whole = privacy.audit(x, big_train.images, held.images, loo_queries=5000)
    assert len(part.train_nn) == 300 and len(whole.train_nn) == 900
    assert part.threshold == pytest.approx(whole.threshold, rel=0.15)
    # computed once and handed in: the same report
    shared = privacy.leave_one_out(big_train.images, loo_queries=300, seed=0)
    again = privacy.audit(x, big_train.images, held.images, train_nn=shared)
    assert again.threshold == part.threshold and torch.equal(again.d_train, part.d_train)


def test_precomputed_vectors_pass_through(members):
    train, heldout = members
    vectors = privacy.as_features(train.images)
    assert torch.equal(privacy.as_features(vectors), vectors)
    a = privacy.audit(train.images[:50], train.images, heldout.images)
    b = privacy.audit(vectors[:50], vectors, privacy.as_features(heldout.images), space="pixel")
    assert a.summary() == b.summary()


def test_cross_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 7, generator=g), torch.randn(30, 7, generator=g)
    d = torch.cdist(a, b)
    a_dist, a_idx, b_dist = privacy.cross_nearest(a, b, chunk=16)
    assert torch.allclose(a_dist, d.min(1).values, atol=1e-5) and torch.equal(a_idx, d.argmin(1))
    assert torch.allclose(b_dist, d.min(0).values, atol=1e-5)
    loo = privacy.cross_nearest(a, a, self_index=torch.arange(50), chunk=16)[0]
    assert torch.allclose(loo, torch.cdist(a, a).fill_diagonal_(float("inf")).min(1).values, atol=1e-5)
    some = torch.tensor([3, 40, 7])                      # leave-one-out for a few rows of a only
    assert torch.allclose(privacy.cross_nearest(a[some], a, self_index=some)[0], loo[some])


def test_heldout_set_matches_class_counts_is_disjoint_and_seeded(digits):
    labels = digits.train.labels.numpy()
    idx = data.stratified_indices(labels, 200, seed=1)
    held = privacy.heldout_indices(labels, idx, seed=3)
    assert len(np.intersect1d(idx, held)) == 0
    assert np.array_equal(np.bincount(labels[idx], minlength=10), np.bincount(labels[held], minlength=10))
    assert np.array_equal(held, privacy.heldout_indices(labels, idx, seed=3))
    assert not np.array_equal(held, privacy.heldout_indices(labels, idx, seed=4))
    big = data.stratified_indices(labels, 1000, seed=0)
    with pytest.raises(ValueError, match="allowed: n up to about half the pool"):
        privacy.heldout_indices(labels, big, seed=0)


def test_closest_pairs_are_sorted_and_point_at_the_copied_image(members):
    train, heldout = members
    x = train.images[[5, 17, 42]].float() / 255
    report = privacy.audit(torch.cat([x, torch.rand(5, 1, 8, 8)]), train.images, heldout.images)
    pairs = privacy.closest_pairs(report, k=3)
    assert sorted(j for _, j, _ in pairs) == [5, 17, 42] and all(dist < 1e-2 for *_, dist in pairs)
    fig = privacy.plot_closest_pairs(x, train.images, pairs, threshold=report.threshold)
    assert len(fig.axes) == 6


def test_privacy_refuses_bad_inputs(members):
    train, heldout = members
    with pytest.raises(ValueError, match=r"copy_quantile=0\.9.*\(0, 0\.5\]"):
        privacy.audit(train.images, train.images, heldout.images, copy_quantile=0.9)
    with pytest.raises(ValueError, match="different dimensions"):
        privacy.audit(train.images, train.images, torch.rand(10, 5))
    with pytest.raises(ValueError, match="loo_queries=0"):
        privacy.audit(train.images, train.images, heldout.images, loo_queries=0)
    with pytest.raises(ValueError, match="space='latent'.*pixel, feature"):
        privacy.audit(train.images, train.images, heldout.images, space="latent")
    with pytest.raises(ValueError, match="count=0"):
        privacy.labels_like(train.labels, 0, seed=0)


# ---------------------------------------------------------------- bias: the imbalanced subset
def test_imbalanced_subset_has_exactly_the_requested_counts_and_is_seeded(digits):
    labels = digits.train.labels.numpy()
    idx = bias.imbalanced_indices(labels, per_class=80, rare_classes=[1, 7], rare_fraction=0.1, seed=0)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.tolist() == [80, 8, 80, 80, 80, 80, 80, 8, 80, 80]
    assert len(np.unique(idx)) == len(idx) and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, bias.imbalanced_indices(labels, 80, [1, 7], 0.1, seed=0))
    assert not np.array_equal(idx, bias.imbalanced_indices(labels, 80, [1, 7], 0.1, seed=1))
    # the rare count rounds and never drops to zero; rare_fraction 1 is the balanced control
    assert bias.imbalanced_counts(10, 80, [3], 0.001)[3] == 1
    assert bias.imbalanced_counts(10, 80, [3], 0.25).tolist() == [80, 80, 80, 20, 80, 80, 80, 80, 80, 80]
    assert set(bias.imbalanced_counts(10, 50, [3], 1.0)) == {50}


@pytest.mark.parametrize("kwargs, message", [
    ({"rare_classes": [10]}, r"rare_classes=\[10\].*allowed values: 0\.\.9"),
    ({"rare_classes": [-1]}, r"rare_classes=\[-1\].*allowed values: 0\.\.9"),
    ({"rare_classes": []}, r"rare_classes=\[\].*non-empty.*0\.\.9"),
    ({"rare_classes": [2, 2]}, "repeats a class"),
    ({"rare_classes": list(range(10))}, "at least one of 0..9 must stay a majority class"),
    ({"rare_fraction": 0.0}, r"rare_fraction=0\.0 must be a number in \(0, 1\]"),
    ({"rare_fraction": 1.5}, r"rare_fraction=1\.5 must be a number in \(0, 1\]"),
    ({"per_class": 0}, "per_class=0 must be a positive integer"),
    ({"per_class": 500}, r"per_class=500 asks for more images.*allowed: per_class up to \d+"),
])
def test_imbalance_parameters_are_checked(digits, kwargs, message):
    args = {"per_class": 50, "rare_classes": [1, 7], "rare_fraction": 0.1, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        bias.imbalanced_indices(digits.train.labels.numpy(), **args)


# ---------------------------------------------------------------- bias: what comes out
def test_generation_shares_flag_a_generator_whose_rare_samples_drift():
    uniform = torch.full((10,), 0.1)
    perfect_judge = torch.eye(10, dtype=torch.float64)
    fair = bias.generation_shares(Encoded(), decode_level, uniform, [0, 4], 2000, seed=0,
                                  real_confusion=perfect_judge)
    assert fair["requested"] == pytest.approx(0.2, abs=0.03) and fair["expected"] == pytest.approx(0.2)
    assert fair["judged"] == pytest.approx(fair["requested"]) and fair["agreement"] == [1.0] * 10
    drifting = bias.generation_shares(Encoded(collapse=[4]), decode_level, uniform, [0, 4], 2000, seed=0,
                                      real_confusion=perfect_judge)
    assert drifting["judged"] == pytest.approx(0.1, abs=0.03) and drifting["judged_over_expected"] < 0.7
    assert drifting["agreement"][4] == 0.0
    # the judge's own errors are not blamed on the generator: it calls half of real class 0 "class 1"
    sloppy = perfect_judge.clone()
    sloppy[0, 0], sloppy[0, 1] = 0.5, 0.5
    assert bias.generation_shares(Encoded(), decode_level, uniform, [0, 4], 10, 0, sloppy)["expected"] == \
        pytest.approx(0.15)


def test_confusion_rows_sum_to_one():
    m = bias.confusion(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    assert m.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5]]


def test_per_class_quality_reports_every_class(members):
    train, heldout = members
    gen = generators.create("pca_gaussian", (1, 8, 8), 10, n_components=16)
    gen.fit(train, steps=1, seed=0, device="cpu", progress=False)
    out = bias.per_class_quality(privacy.as_features, heldout, gen, seed=0, nearest_k=3)
    assert sorted(out) == list(range(10))
    assert all(0 <= v["precision"] <= 1 and 0 <= v["recall"] <= 1 for v in out.values())
    with pytest.raises(ValueError, match="nearest_k=100"):
        bias.per_class_quality(privacy.as_features, heldout, gen, seed=0, nearest_k=100)


def test_gap_and_amplification_verdicts_follow_the_ci():
    assert bias.majority_minority_gap([0.9, 0.5, 0.9, 0.7], rare_classes=[1, 3]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="some but not all"):
        bias.majority_minority_gap([0.9, 0.5], rare_classes=[0, 1])
    rows = []
    for seed, (real, wider, narrower, noisy) in enumerate([(0.10, 0.30, 0.02, 0.30), (0.12, 0.33, 0.03, -0.10),
                                                           (0.11, 0.31, 0.01, 0.20)]):
        for arm, gap in (("real", real), ("wider", wider), ("narrower", narrower), ("noisy", noisy)):
            rows.append({"generator": "g", "seed": seed, "arm": arm, "gap": gap})
    table = bias.amplification(pd.DataFrame(rows)).set_index("arm")
    assert table.loc["wider", "verdict"] == "amplified" and table.loc["wider", "change"] == pytest.approx(0.203, 1e-2)
    assert table.loc["wider", "reference_mean"] == pytest.approx(0.11)
    assert table.loc["narrower", "verdict"] == "reduced"
    assert table.loc["noisy", "verdict"] == "no detectable change"
    assert (table["seeds"] == 3).all()
    # one seed gives no interval, so no claim
    one = bias.amplification(pd.DataFrame([r for r in rows if r["seed"] == 0])).set_index("arm")
    assert (one["verdict"] == "no detectable change").all()
    assert bias.group_means([0.9, 0.5, 0.7, 0.7], [1, 3]) == pytest.approx((0.8, 0.6))


# ---------------------------------------------------------------- parameters
def test_profiles_validate_against_the_audits_schema():
    for profile in config.profiles():
        values = config.load_profile(profile)
        declared = {k: v for k, v in values.items() if k in config.AuditsParams.model_fields}
        config.validate(config.AuditsParams, {**declared, "profile": profile})


@pytest.mark.parametrize("change, message", [
    ({"audit_generators": ["gan9"]}, "audit_generators.*gan9.*allowed values: cgan, cvae"),
    ({"rare_classes": [12]}, r"rare_classes=\[12\].*allowed values: 0\.\.9"),
    ({"rare_fraction": 0}, "rare_fraction"),
    ({"audit_sizes": [10000]}, r"audit_sizes.*allowed: 2\.\.\d+"),
    ({"gen_steps": {"cvae": 30}}, r"gen_steps has no entry for \['pca_gaussian'\]"),
    ({"copy_quantile": 0.7}, "copy_quantile"),
])
def test_audits_schema_refuses_bad_values(change, message):
    values = {k: v for k, v in config.load_profile("smoke").items() if k in config.AuditsParams.model_fields}
    with pytest.raises(config.ParameterError, match=message):
        config.validate(config.AuditsParams, {**values, "profile": "smoke", **change})
