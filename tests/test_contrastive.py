import math

import numpy as np
import pytest
import torch

from synthstudy import contrastive as C
from synthstudy import data, generators


@pytest.fixture(scope="module")
def pca_gen():
    """The cheapest generator (no gradient steps): enough to check how views are built."""
    splits = data.load("digits")
    gen = generators.create("pca_gaussian", (1, 8, 8), 10, n_components=16)
    gen.fit(splits.train, steps=1, seed=0, progress=False)
    return gen


def digits_aug():
    return C.PixelAugment.for_dataset("digits", image_size=8)


# ---------------------------------------------------------------- losses against hand computation
def test_nt_xent_equals_a_hand_computed_value():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])          # scale must not matter: the loss normalises
    z2 = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    tau = 0.5
    # unit vectors a0=(1,0) a1=(0,1) b0=(.6,.8) b1=(1,0); each anchor against the other three, positive = its pair
    def e(s):
        return math.exp(s / tau)
    l_a0 = -math.log(e(0.6) / (e(0.0) + e(0.6) + e(1.0)))      # a0: a1 0, b0 .6 (pos), b1 1
    l_a1 = -math.log(e(0.0) / (e(0.0) + e(0.8) + e(0.0)))      # a1: a0 0, b0 .8, b1 0 (pos)
    l_b0 = -math.log(e(0.6) / (e(0.6) + e(0.8) + e(0.6)))      # b0: a0 .6 (pos), a1 .8, b1 .6
    l_b1 = -math.log(e(0.0) / (e(1.0) + e(0.0) + e(0.6)))      # b1: a0 1, a1 0 (pos), b0 .6
    expected = (l_a0 + l_a1 + l_b0 + l_b1) / 4
    assert C.nt_xent(z1, z2, tau).item() == pytest.approx(expected, rel=1e-5)


def test_supcon_equals_a_hand_computed_value_and_nt_xent_with_distinct_labels():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    tau = 0.5
    def e(s):
        return math.exp(s / tau)
    # one class for all four: every other entry is a positive; loss_i = log(sum_others e) - mean_others(s / tau)
    rows = {"a0": [0.0, 0.6, 1.0], "a1": [0.0, 0.8, 0.0], "b0": [0.6, 0.8, 0.6], "b1": [1.0, 0.0, 0.6]}
    expected = np.mean([math.log(sum(e(s) for s in r)) - np.mean(r) / tau for r in rows.values()])
    assert C.supcon(z1, z2, torch.tensor([3, 3]), tau).item() == pytest.approx(expected, rel=1e-5)
    # all labels distinct: the only positive is the other view, i.e. SimCLR
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert C.supcon(a, b, torch.arange(6), 0.2).item() == pytest.approx(C.nt_xent(a, b, 0.2).item(), rel=1e-6)


def test_losses_have_finite_gradients_and_reward_matching_views():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 4, generator=g, requires_grad=True)
    loss = C.supcon(z, z + 0.01, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), 0.1)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    aligned = C.nt_xent(z.detach(), z.detach(), 0.1)
    shuffled = C.nt_xent(z.detach(), z.detach().roll(1, 0), 0.1)
    assert aligned < shuffled


# ---------------------------------------------------------------- views
def test_latent_views_at_sigma_zero_are_identical(pca_gen):
    views = C.make_views("latent", gen=pca_gen, sigma=0.0)
    x1, x2, _ = views.next_pair(32, torch.Generator().manual_seed(0))
    assert x1.shape == (32, 1, 8, 8) and torch.equal(x1, x2)
    # ... and differ, more and more, as sigma grows (same seed: same anchors and the same eps)
    gaps = []
    for sigma in (0.3, 1.0, 3.0):
        a, b, _ = C.make_views("latent", gen=pca_gen, sigma=sigma).next_pair(32, torch.Generator().manual_seed(0))
        assert torch.equal(a, x1) and not torch.equal(a, b)
        gaps.append(float((a - b).abs().mean()))
    assert gaps[0] < gaps[1] < gaps[2]


def test_views_of_each_kind_keep_shape_range_and_class(pca_gen):
    g = torch.Generator().manual_seed(0)
    for kind in C.VIEW_KINDS:
        sigma = 0.0 if kind == "pixel" else 0.5
        x1, x2, y = C.make_views(kind, gen=pca_gen, sigma=sigma, augment=digits_aug()).next_pair(16, g)
        assert x1.shape == x2.shape == (16, 1, 8, 8) and y.shape == (16,)
        assert x1.min() >= 0 and x1.max() <= 1 and not torch.equal(x1, x2)
    real = data.load("digits").train
    x1, x2, y = C.make_views("pixel", real=real, augment=digits_aug()).next_pair(16, g)
    assert x1.dtype == torch.float32 and x1.max() <= 1 and not torch.equal(x1, x2)


def test_fixed_anchor_pool_reuses_its_latents_and_truncation_bounds_them(pca_gen):
    views = C.make_views("latent", gen=pca_gen, sigma=0.0, anchors=10, seed=0)
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([views.next_pair(10, g)[0] for _ in range(3)])
    assert len(torch.unique(seen.flatten(1), dim=0)) == 10        # 30 pairs, 10 distinct anchors
    assert sorted(views.pool_labels.tolist()) == list(range(10))  # balanced classes
    t = C.make_views("latent", gen=pca_gen, sigma=2.0, truncation=1.0)
    z, _ = t._anchor_batch(500, g)
    assert z.abs().max() <= 1.0 and t.neighbours(z, g).abs().max() <= 1.0


def test_pixel_augment_flips_only_where_allowed():
    x = torch.zeros(256, 1, 8, 8)
    x[:, :, :, :2] = 1.0                                  # a bright bar on the left edge
    no_flip = C.PixelAugment(crop_min=1.0, flip=False, jitter=0.0)(x, torch.Generator().manual_seed(0))
    flip = C.PixelAugment(crop_min=1.0, flip=True, jitter=0.0)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(no_flip, x, atol=1e-5)           # a full-size crop without flip is the identity
    right = flip[:, 0, :, -2:].mean((1, 2)) > 0.9
    assert 0.3 < right.float().mean() < 0.7                # about half mirrored
    assert not C.PixelAugment.for_dataset("digits", 8).flip and C.PixelAugment.for_dataset("fashion_mnist", 28).flip


# ---------------------------------------------------------------- training and evaluation
def fit_digits(steps=40, seed=0, method="simclr"):
    splits = data.load("digits")
    enc = C.create_encoder("cnn", 1, 8, seed=seed)
    # one thread: an 8x8 model gains nothing from two, and one is immune to a busy machine's thread contention
    cfg = C.ContrastiveConfig(method=method, steps=steps, batch_size=64, lr=0.1, seed=seed, device="cpu",
                              threads=1, progress=False)
    return C.fit(enc, C.make_views("pixel", real=splits.train, augment=digits_aug()), cfg), splits


def test_encoder_learns_far_above_chance_on_digits_in_seconds():
    result, splits = fit_digits(steps=60)
    assert result.seconds < 60
    # it learned the objective: on fresh pairs (same batch for both) the trained encoder's loss is far below the
    # untrained one's; a random CNN already gives good linear probes on digits, so the probe alone proves little
    views = C.make_views("pixel", real=splits.test, augment=digits_aug())
    x1, x2, _ = views.next_pair(128, torch.Generator().manual_seed(9))

    def pair_loss(enc):
        enc.eval()
        with torch.no_grad():
            z1, z2 = enc(torch.cat([x1, x2]) * 2 - 1).chunk(2)
        return C.nt_xent(z1, z2, 0.2).item()

    assert pair_loss(result.encoder) < 0.7 * pair_loss(C.create_encoder("cnn", 1, 8, seed=0))
    scores, _ = C.evaluate(result.encoder, splits.train, {"test": splits.test}, knn_k=10)
    assert scores["probe_accuracy_test"] > 0.7, scores      # chance is 0.1
    assert scores["knn_accuracy_test"] > 0.6, scores


def test_same_seed_same_loss_curve_other_seed_differs():
    a, _ = fit_digits(steps=10, seed=1)
    b, _ = fit_digits(steps=10, seed=1)
    c, _ = fit_digits(steps=10, seed=2)
    assert a.losses == b.losses
    assert a.losses != c.losses


def test_probe_never_sees_the_test_split_during_fitting():
    result, splits = fit_digits(steps=5)
    g = torch.Generator().manual_seed(0)
    poisoned = data.ImageSet(torch.randint(0, 256, splits.test.images.shape, dtype=torch.uint8, generator=g),
                             splits.test.labels[torch.randperm(len(splits.test), generator=g)])
    clean, probe = C.evaluate(result.encoder, splits.train, {"test": splits.test}, knn_k=10)
    dirty, probe2 = C.evaluate(result.encoder, splits.train, {"test": poisoned}, knn_k=10)
    alone = C.LinearProbe.fit(C.extract_features(result.encoder, splits.train.images), splits.train.labels)
    for other in (probe2, alone):               # the fitted probe depends on the fit set only
        assert torch.equal(probe.weight, other.weight) and torch.equal(probe.mean, other.mean)
    assert clean["probe_accuracy_test"] > 0.5 and dirty["probe_accuracy_test"] < 0.25


def test_knn_accuracy_on_separable_features():
    ref = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    labels = torch.tensor([0] * 5 + [1] * 5)
    assert C.knn_accuracy(ref, labels, torch.tensor([[2.0, 0.1], [0.1, 3.0]]), torch.tensor([0, 1]), k=3) == 1.0


# ---------------------------------------------------------------- bad parameters
@pytest.mark.parametrize("build,name,allowed", [
    (lambda g: C.ContrastiveConfig(method="moco"), "method", "simclr, supcon"),
    (lambda g: C.ContrastiveConfig(temperature=0.0), "temperature", "> 0"),
    (lambda g: C.ContrastiveConfig(temperature=-1), "temperature", "> 0"),
    (lambda g: C.ContrastiveConfig(batch_size=1), "batch_size", ">= 2"),
    (lambda g: C.make_views("mixup", gen=g), "kind", "pixel, latent, latent_pixel"),
    (lambda g: C.make_views("latent", gen=g, sigma=-0.1), "sigma", ">= 0"),
    (lambda g: C.make_views("latent", gen=g, truncation=-1.0), "truncation", ">= 0"),
    (lambda g: C.make_views("latent", gen=g, anchors=0), "anchors", "positive"),
    (lambda g: C.make_views("pixel", gen=g, sigma=0.5, augment=digits_aug()), "sigma", "latent"),
    (lambda g: C.make_views("latent_pixel", gen=g, sigma=0.5), "kind", "augment"),
    (lambda g: C.make_views("latent", real=data.load("digits").train), "kind", "pixel"),
    (lambda g: C.nt_xent(torch.ones(2, 3), torch.ones(2, 3), 0), "temperature", "> 0"),
    (lambda g: C.contrastive_loss("byol", torch.ones(2, 3), torch.ones(2, 3), None, 0.1), "method", "supcon"),
    (lambda g: C.PixelAugment.for_dataset("mnist", 28), "dataset", "fashion_mnist"),
])
def test_bad_parameters_name_the_parameter_and_what_is_allowed(pca_gen, build, name, allowed):
    with pytest.raises(ValueError) as err:
        build(pca_gen)
    assert name in str(err.value) and allowed in str(err.value)


# ---------------------------------------------------------------- neighbour noise, label-free views, the cell
def test_variance_preserving_neighbours_stay_on_the_prior_and_additive_ones_do_not():
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(20000, 8, generator=g), torch.randn(20000, 8, generator=g)
    vp = C.neighbour(z, eps, 2.0, "variance_preserving")
    add = C.neighbour(z, eps, 2.0, "additive")
    assert vp.std().item() == pytest.approx(1.0, abs=0.02) and add.std().item() == pytest.approx(5 ** 0.5, abs=0.05)
    corr = float(torch.corrcoef(torch.stack([z.flatten(), vp.flatten()]))[0, 1])
    assert corr == pytest.approx(1 / 5 ** 0.5, abs=0.02)                  # 1 / sqrt(1 + sigma^2)
    assert torch.equal(C.neighbour(z, eps, 0.0, "variance_preserving"), z)
    assert C.neighbour(z, eps, 2.0, "additive", truncation=1.0).abs().max() <= 1.0


def test_label_free_pca_views_carry_no_class_and_refuse_supcon(pca_gen):
    free = C.label_free(pca_gen)
    z = pca_gen.sample_latents(torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0))
    a, b = free.decode(z, torch.zeros(4, dtype=torch.long)), free.decode(z, torch.full((4,), 7))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1           # the label does not enter the decoder
    x1, x2, labels = C.make_views("latent", gen=free, sigma=0.5, noise="variance_preserving").next_pair(
        16, torch.Generator().manual_seed(0))
    assert x1.shape == (16, 1, 8, 8) and (labels == -1).all() and not torch.equal(x1, x2)
    with pytest.raises(ValueError, match="simclr"):
        C.contrastive_loss("supcon", torch.randn(16, 4), torch.randn(16, 4), labels, 0.2)


def test_label_free_flow_uses_the_null_class_once_per_step():
    splits = data.load("digits")
    flow = generators.create("flow", (1, 8, 8), 10, hidden=32, blocks=1, sample_steps=2, guidance=1.5)
    flow.fit(splits.train, steps=6, seed=0, progress=False)
    free = C.label_free(flow)
    z = flow.sample_latents(torch.arange(4), torch.Generator().manual_seed(0))
    x = free.decode(z, torch.arange(4))
    assert x.shape == (4, 1, 8, 8) and torch.equal(x, free.decode(z, torch.zeros(4, dtype=torch.long)))
    assert flow.config["guidance"] == 1.5                                  # the shared model is untouched
    with pytest.raises(ValueError, match="pca_gaussian"):
        C.label_free(generators.create("cvae", (1, 8, 8), 10))


def test_multiview_cell_is_shippable_and_keys_hold_the_recipe(tmp_path):
    import functools
    import pickle
    from types import SimpleNamespace

    from synthstudy import runs
    params = SimpleNamespace(dataset="digits", model="cnn", generator="pca_gaussian", gen_steps={"pca_gaussian": 1},
                             gen_seed=0, view_noise="variance_preserving", latent_truncation=0.0, mv_steps=3,
                             mv_batch_size=16, mv_lr=0.05, mv_temperature=0.2, val_size=100, mv_probe_size="all",
                             mv_eval_size="all", mv_knn_k=5)
    key = C.multiview_key(params, "synthetic", "simclr", "latent", 0, sigma=0.5, label_free=True)
    assert key["encoder_version"] == C.ENCODER_VERSION and key["noise"] == "variance_preserving"
    assert key["gen_identity"] and key["steps"] == 3
    real = C.multiview_key(params, "real", "simclr", "pixel", 0)
    assert real["generator"] is None and real["noise"] is None and real["gen_identity"] is None
    floor = C.multiview_key(params, "none", "none", "none", 0)
    assert floor["steps"] is None and floor["lr"] is None                 # the floor does not depend on the recipe
    cell = functools.partial(C.multiview_cell, device="cpu", progress=False)
    runs.check_shippable(cell)
    pickle.dumps(cell)
    metrics = cell(key, tmp_path)
    assert 0.1 < metrics["probe_accuracy_test"] <= 1 and metrics["train_seconds"] > 0
    with pytest.raises(ValueError, match="synthetic"):
        C.multiview_key(params, "real", "simclr", "pixel", 0, label_free=True)
    # the floor's extra initialisations: init 0 keeps the old key, others are new cells with other weights
    assert C.multiview_key(params, "none", "none", "none", 0, init=0) == floor and "init" not in floor
    other = C.multiview_key(params, "none", "none", "none", 0, init=1)
    assert other["init"] == 1 and runs.stable_hash(other) != runs.stable_hash(floor)
    first, second = cell(floor, tmp_path / "a"), cell(other, tmp_path / "b")
    def scores(m):
        return {k: v for k, v in m.items() if k.endswith(("_val", "_test"))}
    assert scores(first) != scores(second) and second["train_seconds"] == 0             # other random weights
    assert scores(cell(other, tmp_path / "c")) == scores(second)                         # deterministic
    with pytest.raises(ValueError, match="init=1 is for source='none'"):
        C.multiview_key(params, "real", "simclr", "pixel", 0, init=1)


@pytest.mark.parametrize("field,value,allowed", [
    ("view_noise", "gaussian", "additive"),
    ("control_generator", "cgan", "flow, pca_gaussian"),
    ("sigmas", [0.1, 0.5, 20.0], "[0, 10]"),
    ("sigmas", [0.1, 0.5], "at least 3"),
    ("anchor_pools", [100, 10 ** 6], "never seen twice"),
    ("mv_extra_seeds", [0], "not in seeds"),
    ("mv_floor_inits", 0, "greater than or equal to 1"),
])
def test_multiview_parameters_are_refused_before_compute_naming_what_is_allowed(field, value, allowed):
    from synthstudy import config
    profile = config.load_profile("smoke")
    params = {k: v for k, v in profile.items() if k in config.MultiviewParams.model_fields}
    params.update(profile="smoke", **{field: value})
    with pytest.raises(config.ParameterError) as err:
        config.validate(config.MultiviewParams, params)
    assert field in str(err.value) or allowed in str(err.value)
    assert allowed in str(err.value)
