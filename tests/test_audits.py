"""The audits catch what they claim to catch: a generator that returns its training images is flagged (copy rate
~1, copy excess ~0.95, attack AUC ~1), fresh samples of a smooth model are not, and smooth mean-like samples no
longer count as copies; the planted memoriser is flagged at every N; the analysis turns constructed tables into the
right verdicts; the imbalanced subset is exactly what was asked for; bad parameters are refused with the
parameter's name and the allowed values."""
import functools
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from synthstudy import config, data, generators, metrics
from synthstudy.audits import analysis, bias, cells, privacy


# ---------------------------------------------------------------- constructed generators
class Copier:
    """A "generator" that hands back random training images of the requested class."""

    def __init__(self, train: data.ImageSet, num_classes: int = 10):
        self.train, self.num_classes = train, num_classes

    def sample(self, labels, rng=None):
        out = []
        for y in labels.tolist():
            pool = torch.nonzero(self.train.labels == y).flatten()
            out.append(self.train.images[pool[torch.randint(len(pool), (1,), generator=rng)]])
        return torch.cat(out).float() / 255


class ClassMeanNoise:
    """A smooth model that never saw an individual image: class mean + Gaussian pixel noise."""

    def __init__(self, train: data.ImageSet, num_classes: int = 10, noise: float = 0.15):
        self.means = torch.stack([train.images[train.labels == c].float().mean(0) / 255 for c in range(num_classes)])
        self.num_classes, self.noise = num_classes, noise

    def sample(self, labels, rng=None):
        x = self.means[labels]
        return (x + self.noise * torch.randn(x.shape, generator=rng)).clamp(0, 1)


class Encoded:
    """Images that encode their class as a brightness level; `collapse` maps those classes to class 9's look."""

    def __init__(self, num_classes: int = 10, collapse=()):
        self.num_classes, self.collapse = num_classes, set(collapse)

    def sample(self, labels, rng=None):
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


# ---------------------------------------------------------------- copy excess and the planted memoriser
@pytest.mark.parametrize("n", [50, 300])
def test_planted_memoriser_is_flagged_at_every_n_in_both_spaces(digits, n):
    """The positive control: training images + faint noise. Copy excess near 1 - copy_quantile, attack AUC above
    the 0.9 bar with 3 samples per member, in pixel space and in a feature space."""
    pool = digits.train
    idx = data.stratified_indices(pool.labels.numpy(), n, seed=0)
    train, heldout = pool.take(idx), pool.take(privacy.heldout_indices(pool.labels, idx, seed=0))
    memoriser = privacy.Memoriser(train)
    weights = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    for embed in (None, lambda x: privacy.as_features(x) @ weights):
        s = audit_of(memoriser, train, heldout, embed=embed, count=3 * n).summary()
        # measured: excess 0.90-0.95, AUC 0.95-0.98 (1 - e^-3 = 95% of members hit)
        assert s["copy_excess"] > 0.8 and s["mia_auc"] > 0.9, s


def test_memoriser_returns_noisy_training_images_of_the_requested_class(members):
    train, _ = members
    memoriser = privacy.Memoriser(train, noise=0.03)
    labels = torch.tensor([3, 3, 7, 0])
    x = memoriser.sample(labels, rng=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    t = privacy.as_features(train.images)
    d, nearest, _ = privacy.cross_nearest(privacy.as_features(x), t)
    assert (train.labels[nearest] == labels).all() and d.max() < 0.03 * 8 * 2   # ~ noise x sqrt(64 pixels)
    assert 0 < d.min()                                                         # not bit-identical copies
    with pytest.raises(ValueError, match="no training image of class"):
        privacy.Memoriser(train.take(np.flatnonzero(train.labels.numpy() != 5))).sample(torch.tensor([5]))
    with pytest.raises(ValueError, match="noise=1.5"):
        privacy.Memoriser(train, noise=1.5)


def test_copy_excess_is_zero_for_models_that_never_saw_the_members(digits, members):
    """Fresh real images, a PCA model and noisy class means fitted on other images: as near the held-out images as
    the training ones, so the excess stays near 0 whatever the copy rate. A PCA fitted on the members themselves at
    small N lives in their span: the excess catches that (measured: +0.45 at N=50, AUC 0.996)."""
    train, heldout = members
    pool = digits.train
    used = np.concatenate([data.stratified_indices(pool.labels.numpy(), 300, seed=0),
                           privacy.heldout_indices(pool.labels, data.stratified_indices(pool.labels.numpy(), 300,
                                                                                        seed=0), seed=0)])
    fresh = pool.take(np.setdiff1d(np.arange(len(pool)), used))
    real = privacy.audit(fresh.images, train.images, heldout.images).summary()
    assert abs(real["copy_excess"]) < 0.03 and real["copy_rate"] < 0.1         # measured -0.003, 0.066
    pca = generators.create("pca_gaussian", (1, 8, 8), 10, n_components=16)
    pca.fit(fresh, steps=1, seed=0, device="cpu", progress=False)
    assert abs(audit_of(pca, train, heldout).copy_excess) < 0.03               # measured -0.004
    assert abs(audit_of(ClassMeanNoise(fresh, noise=0.05), train, heldout).copy_excess) < 0.04   # measured -0.008
    s = audit_of(Copier(train), train, heldout).summary()
    assert s["copy_excess"] > 0.85 and s["copy_rate_heldout"] < 0.15
    small = data.stratified_indices(pool.labels.numpy(), 50, seed=0)
    small_train, small_held = pool.take(small), pool.take(privacy.heldout_indices(pool.labels, small, seed=0))
    pca.fit(small_train, steps=1, seed=0, device="cpu", progress=False)
    assert audit_of(pca, small_train, small_held, count=150).copy_excess > 0.3


def test_copy_excess_thresholds_come_from_real_to_real_distances(digits, members):
    """Equal sets share one τ from both sets' leave-one-out distances; unequal ones (the whole pool against the
    validation split) each get their own, so both rates stay calibrated."""
    train, heldout = members

    def loo(images):
        brute = torch.cdist(privacy.as_features(images), privacy.as_features(images))
        return brute.fill_diagonal_(float("inf")).min(1).values.double()
    report = audit_of(ClassMeanNoise(train), train, heldout, count=200)
    pooled = float(torch.quantile(torch.cat([loo(train.images), loo(heldout.images)]), 0.05))
    assert report.threshold == report.threshold_heldout == pytest.approx(pooled, abs=1e-3)
    small = heldout.take(range(120))
    uneven = audit_of(ClassMeanNoise(train), train, small, count=200)
    assert uneven.threshold_heldout == pytest.approx(float(torch.quantile(loo(small.images), 0.05)), abs=1e-3)
    assert uneven.threshold == pytest.approx(float(torch.quantile(loo(train.images), 0.05)), abs=1e-3)
    assert report.copy_excess == pytest.approx(report.copy_rate - report.copy_rate_heldout)
    with pytest.raises(ValueError, match="at least 2 images in each set"):
        privacy.audit(train.images[:5], train.images, heldout.images[:1])


def test_privacy_cell_is_a_picklable_package_function_and_flags_the_memoriser(digits, tmp_path):
    """The scale-out rule: the cell given to run.grid is a module-level function (a partial of one), everything
    it needs comes from the key."""
    key = {"dataset": "digits", "val_size": 100, "version": cells.AUDITS_VERSION, "part": "privacy",
           # 100 steps (98% on validation): a 20-step extractor (71%) blows the memoriser's faint noise up
           "extractor": cells.extractor_spec(100, "cnn", "crop", 64),
           "contrastive": cells.contrastive_spec(3, "cnn", 32),
           "samples": 100, "copy_quantile": 0.05, "memoriser_noise": privacy.MEMORISER_NOISE,
           "generator": cells.MEMORISER, "n": 60, "subset_seed": 0, "seed": 0}
    cell = functools.partial(cells.privacy_cell, device="cpu", progress=False)
    assert pickle.loads(pickle.dumps(cell)).func is cells.privacy_cell
    out = cell(key, tmp_path)
    assert out["n_train"] == 60 and out["pixel_samples"] == 180
    assert out["pixel_copy_excess"] > 0.8 and out["feature_copy_excess"] > 0.8 and out["pixel_mia_auc"] > 0.9
    assert (tmp_path / "pixel_pairs.npy").is_file() and (tmp_path / "heldout_indices.npy").is_file()
    whole = cell({**key, "n": "all"}, tmp_path / "all")
    assert "feature_copy_rate" not in whole and whole["pixel_copy_excess"] > 0.8
    assert {"domain_fid", "contrastive_fid", "domain_kid", "contrastive_kid"} <= set(whole)


# ---------------------------------------------------------------- analysis on constructed tables
def privacy_rows(generator, n, excess_train, excess_held, auc, spaces=("pixel", "feature"), seeds=(0, 1, 2)):
    """Flat privacy-cell rows as `runs.flatten` gives them, with a small per-seed wobble."""
    rows = []
    for seed in seeds:
        wobble = 0.002 * (seed - 1)
        row = {"generator": generator, "n": n, "n_train": n, "seed": seed}
        for space in spaces:
            row.update({f"{space}_copy_rate": excess_train + wobble, f"{space}_copy_rate_heldout": excess_held,
                        f"{space}_copy_excess": excess_train + wobble - excess_held,
                        f"{space}_mia_auc": auc + wobble})
        rows.append(row)
    return rows


@pytest.fixture
def privacy_family():
    table = pd.DataFrame(
        privacy_rows("memoriser", 100, 0.99, 0.05, 0.97) + privacy_rows("copier_ish", 100, 0.40, 0.10, 0.80)
        + privacy_rows("clean", 100, 0.05, 0.05, 0.50) + privacy_rows("memoriser", 5000, 0.99, 0.05, 0.52, ("pixel",))
        + privacy_rows("clean", 5000, 0.05, 0.05, 0.50, ("pixel",)))
    long = analysis.privacy_long(table)
    ceilings = analysis.attack_ceilings(long)
    family = metrics.with_verdicts(pd.concat([analysis.copy_excess_comparisons(long, 0.02),
                                              analysis.attack_comparisons(long, ceilings, 0.05)], ignore_index=True))
    return family, ceilings


def test_copy_excess_and_attack_verdicts_with_the_ceiling_beside(privacy_family):
    family, ceilings = privacy_family
    assert set(ceilings["ceiling"].round(2)) == {0.97, 0.52}
    excess = family[family["measure"] == "copy excess"].set_index(["generator", "n_train", "space"])
    assert excess.loc[("copier_ish", 100, "pixel"), "difference"] == pytest.approx(0.30)
    assert excess.loc[("copier_ish", 100, "pixel"), "verdict"] == "higher"
    assert excess.loc[("clean", 100, "feature"), "verdict"] == "equivalent"      # inside ±2 pts, by TOST
    attack = family[family["measure"] == "attack AUC"]
    # no AUC where the memoriser's ceiling (0.52 at N=5,000 here) is below 0.9; the ceiling rides along elsewhere
    assert set(attack["n_train"]) == {100} and (attack["ceiling"] > 0.9).all()
    assert attack.set_index(["generator", "space"]).loc[("copier_ish", "pixel"), "verdict"] == "higher"
    assert len(analysis.unpowered_settings(ceilings)) == 1


def test_positive_control_reports_every_setting_and_a_miss(privacy_family):
    family, ceilings = privacy_family
    control = analysis.positive_control(family)
    assert control["flagged"].all() and len(control) == 3 + 2           # excess: 2 spaces + 1 at 5,000; AUC: 2
    assert "flagged by every audit at every N" in analysis.positive_control_text(control, pool_size=5000)
    missed = family.copy()
    missed.loc[(missed["generator"] == "memoriser") & (missed["n_train"] == 5000), "verdict"] = "inconclusive"
    text = analysis.positive_control_text(analysis.positive_control(missed), pool_size=5000)
    assert "NOT flagged" in text and "N=5,000 (whole pool)" in text
    with pytest.raises(ValueError, match="positive control"):
        analysis.positive_control(family[family["generator"] != "memoriser"])


def test_privacy_summary_and_findings_say_where_no_auc_is_reported(privacy_family):
    family, ceilings = privacy_family
    summary = analysis.privacy_summary(family, ceilings, pool_size=5000)
    assert list(summary.columns) == ["audit", "generator", "setting", "measure", "value", "finding"]
    assert len(summary) == 2 * 5                            # (generator, N) pairs x {copy excess, attack}
    rows = summary.set_index(["generator", "setting", "measure"])["value"]
    attack = "membership attack AUC (copier ceiling)"
    assert rows[("clean", "N=5,000 (whole pool)", attack)] == "pixel: not reported (ceiling 0.52 < 0.9)"
    assert "ceiling 0.97" in rows[("copier_ish", "N=100", attack)]
    words = summary.set_index(["generator", "setting", "measure"])["finding"]
    assert words[("copier_ish", "N=100", "copy excess P(d_train<τ) − P(d_heldout<τ)")].startswith("feature: copies")
    lines = analysis.privacy_findings(family, ceilings, pool_size=5000)
    assert "flagged by every audit" in lines[0] and any("No AUC is reported at N=5,000" in line for line in lines)
    assert not any("`memoriser`" in line for line in lines[1:])


def bias_groups_table(real_gap, balanced_gap, synthetic_gap, matched_gap, seeds=(0, 1, 2)):
    rows = []
    for seed in seeds:
        wobble = 0.004 * (seed - 1)
        for arm, gap in (("real", real_gap), ("real_balanced", balanced_gap), ("synthetic_balanced", synthetic_gap),
                         ("synthetic_matched", matched_gap)):
            rows.append({"generator": "g", "seed": seed, "arm": arm, "gap": gap + wobble,
                         "minority": 0.8 - gap / 2 + wobble, "majority": 0.8 + gap / 2, "accuracy": 0.8})
    return pd.DataFrame(rows)


def test_bias_amplification_is_measured_against_the_balanced_real_arm():
    """Synthetic balanced data narrows the gap a lot relative to the imbalanced real arm, but widens it relative to
    real data with the same balance: the fair verdict is "amplified", not "reduced"."""
    groups = bias_groups_table(real_gap=0.40, balanced_gap=0.05, synthetic_gap=0.15, matched_gap=0.40)
    family = metrics.with_verdicts(analysis.bias_comparisons(groups, margin=0.01))
    gap = family[family["measure"] == "gap"].set_index(["arm", "reference"])
    assert gap.loc[("synthetic_balanced", "real_balanced"), "difference"] == pytest.approx(0.10)
    assert gap.loc[("synthetic_balanced", "real_balanced"), "verdict"] == "higher"
    assert gap.loc[("real_balanced", "real"), "verdict"] == "lower"        # rebalancing alone narrows it
    assert gap.loc[("synthetic_matched", "real"), "verdict"] == "equivalent"
    assert ("synthetic_balanced", "real") not in gap.index                  # the unfair pair is not drawn
    summary = analysis.bias_summary(family, groups).set_index("setting")
    assert summary.loc["synthetic_balanced vs real_balanced", "finding"].startswith("amplified (minority")
    assert summary.loc["synthetic_balanced vs real_balanced", "value"].startswith("15.0 ± ")
    lines = analysis.bias_findings(family, groups)
    assert any("synthetic_balanced vs real_balanced" in line and "**amplified (" in line for line in lines)
    # one seed: no interval, no claim
    one = metrics.with_verdicts(analysis.bias_comparisons(groups[groups["seed"] == 0], margin=0.01))
    assert (one["verdict"] == "inconclusive").all()


def test_ranking_agreement_names_the_discordant_pairs():
    rows = [{"generator": g, "seed": s, "domain_fid": d + 0.01 * s, "contrastive_fid": c + 0.01 * s}
            for s in range(3) for g, d, c in (("a", 1.0, 5.0), ("b", 2.0, 4.0), ("c", 3.0, 9.0),
                                               ("memoriser", 0.1, 0.1))]
    ranked, disagreements = analysis.ranking_agreement(pd.DataFrame(rows))
    assert ranked["generator"].tolist() == ["a", "b", "c"]                  # the memoriser is the floor, not ranked
    assert ranked["domain_rank"].tolist() == [1, 2, 3] and ranked["contrastive_rank"].tolist() == [2, 1, 3]
    assert len(disagreements) == 1 and disagreements[0].startswith("a vs b")
    assert "disagree" in analysis.ranking_text(ranked, disagreements)
    same = pd.DataFrame([{**r, "contrastive_fid": r["domain_fid"] * 2} for r in rows])
    assert "agree in both" in analysis.ranking_text(*analysis.ranking_agreement(same))


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


def test_gap_is_majority_minus_minority():
    assert bias.majority_minority_gap([0.9, 0.5, 0.9, 0.7], rare_classes=[1, 3]) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="some but not all"):
        bias.majority_minority_gap([0.9, 0.5], rare_classes=[0, 1])
    assert bias.group_means([0.9, 0.5, 0.7, 0.7], [1, 3]) == pytest.approx((0.8, 0.6))


def test_balanced_resampler_draws_classes_uniformly_from_an_imbalanced_set(digits):
    labels = digits.train.labels.numpy()
    subset = digits.train.take(bias.imbalanced_indices(labels, per_class=60, rare_classes=[1, 7], rare_fraction=0.1,
                                                       seed=0))
    source = bias.BalancedResampler(subset)
    g = torch.Generator().manual_seed(0)
    drawn = torch.cat([source.next_batch(500, g)[1] for _ in range(20)])
    shares = torch.bincount(drawn, minlength=10).double() / len(drawn)
    assert torch.allclose(shares, torch.full((10,), 0.1, dtype=torch.float64), atol=0.015)   # rare: 6 images, 10%
    images, labels_ = source.next_batch(64, torch.Generator().manual_seed(1))
    assert images.dtype == torch.uint8 and len(images) == len(labels_) == 64
    again = source.next_batch(64, torch.Generator().manual_seed(1))
    assert torch.equal(images, again[0])


# ---------------------------------------------------------------- parameters
def test_profiles_validate_against_the_audits_schema():
    for profile in config.profiles():
        values = config.load_profile(profile)
        declared = {k: v for k, v in values.items() if k in config.AuditsParams.model_fields}
        config.validate(config.AuditsParams, {**declared, "profile": profile})


@pytest.mark.parametrize("change, message", [
    ({"audit_generators": ["gan9"]}, "audit_generators.*gan9.*allowed values \\(each once\\): cgan, cvae"),
    ({"rare_classes": [12]}, r"rare_classes=\[12\].*allowed values: 0\.\.9"),
    ({"rare_fraction": 0}, "rare_fraction"),
    ({"audit_sizes": [10000]}, r"audit_sizes.*allowed: 2\.\.\d+"),
    ({"gen_steps": {"pca_gaussian": 1}}, r"gen_steps has no entry for \['cvae'\]"),
    ({"audit_gen_steps": {"cvae": 30}}, r"audit_gen_steps has no entry for \['pca_gaussian'\]"),
    ({"copy_margin": 0}, "copy_margin"),
    ({"auc_margin": 0.6}, "auc_margin"),
    ({"copy_quantile": 0.7}, "copy_quantile"),
])
def test_audits_schema_refuses_bad_values(change, message):
    values = {k: v for k, v in config.load_profile("smoke").items() if k in config.AuditsParams.model_fields}
    with pytest.raises(config.ParameterError, match=message):
        config.validate(config.AuditsParams, {**values, "profile": "smoke", **change})


def test_plot_vs_n_draws_a_negative_mean_with_its_interval():
    """A copy excess below zero (fewer samples near the training set than near held-out images) is a valid result:
    the plot must draw it, not fail on a negative error bar (seen on the quick run: flow, N=1,000)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from synthstudy.audits import privacy
    summary = pd.DataFrame({"generator": ["flow", "flow"], "n_train": [100, 1000], "mean": [0.4, -0.01],
                            "ci_low": [0.3, -0.03], "ci_high": [0.5, 0.01]})
    fig, ax = plt.subplots()
    privacy.plot_vs_n(summary, ax, "copy excess", reference=0.0, bounds=(-1.0, 1.0))
    low_bar = ax.containers[0].lines[2][0].get_segments()[1]        # the N=1,000 bar spans its CI, below zero
    assert low_bar[0][1] == pytest.approx(-0.03) and low_bar[1][1] == pytest.approx(0.01)
    plt.close(fig)
