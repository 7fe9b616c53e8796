import io

import numpy as np
import pytest
import torch

from synthstudy import data, generators
from synthstudy.generators import cgan
from synthstudy.generators.filtered import ClassifierFiltered

# tiny widths and step counts: these tests check behaviour and plumbing, not image quality
FAST = {
    "pca_gaussian": {"n_components": 16},
    "cvae": {"width": 8, "latent_dim": 4, "embed_dim": 4, "batch_size": 32, "sample_noise": 0.0},
    "cgan": {"width": 8, "latent_dim": 8, "batch_size": 16, "bn_batches": 2},
    "flow": {"width": 4, "hidden": 32, "blocks": 1, "batch_size": 32, "ae_batch_size": 16, "sample_steps": 4},
}
FAMILIES = ["pca_gaussian", "cvae", "cgan", "flow"]
TRAINED = ["cvae", "cgan", "flow"]        # the families with gradient steps
STEPS = 6


def fit(name, train, seed=0, steps=STEPS, **config):
    gen = generators.create(name, (1, 8, 8), 10, **{**FAST[name], **config})
    gen.fit(train, steps=steps, seed=seed, device="cpu", progress=False, threads=1)
    return gen


def flat_state(gen):
    return torch.cat([t.detach().float().flatten() for t in gen.state_dict().values()])


def rng(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def small(digits):
    """300 stratified digits: every class present, fits are instant."""
    return digits.train.take(data.stratified_indices(digits.train.labels.numpy(), 300, seed=0))


@pytest.fixture(scope="module")
def fitted(small):
    torch.set_num_threads(1)
    return {name: fit(name, small) for name in generators.available()}


def test_registry_lists_the_four_families():
    assert generators.available() == sorted(FAMILIES)
    assert "width" in generators.config_options("cgan")


@pytest.mark.parametrize("name", FAMILIES)
def test_fit_then_sample_gives_float_images_in_unit_range(fitted, name):
    gen = fitted[name]
    labels = torch.arange(20) % 10
    x = gen.sample(labels, rng(0))
    assert x.shape == (20, 1, 8, 8) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert x.min() >= 0 and x.max() <= 1 and x.std() > 0
    assert gen.history["steps"] == STEPS and gen.history["n_train"] == 300
    # sample is decode(sample_latents(...)) with the same random stream
    z = gen.sample_latents(labels, rng(0))
    assert z.shape == (20, gen.latent_dim)
    assert torch.equal(gen.decode(z, labels), x)


@pytest.mark.parametrize("name", FAMILIES)
def test_sampling_seed_controls_samples(fitted, name):
    gen, labels = fitted[name], torch.arange(10)
    assert torch.equal(gen.sample(labels, rng(3)), gen.sample(labels, rng(3)))
    assert not torch.equal(gen.sample(labels, rng(3)), gen.sample(labels, rng(4)))


@pytest.mark.parametrize("name", TRAINED)
def test_same_seed_same_weights_other_seed_differs(small, fitted, name):
    again, other = fit(name, small, seed=0), fit(name, small, seed=1)
    assert torch.equal(flat_state(again), flat_state(fitted[name]))
    assert not torch.equal(flat_state(other), flat_state(fitted[name]))
    labels = torch.arange(10)
    assert torch.equal(again.sample(labels, rng(0)), fitted[name].sample(labels, rng(0)))
    assert not torch.equal(other.sample(labels, rng(0)), fitted[name].sample(labels, rng(0)))


def test_fit_cached_trains_once_and_returns_equal_weights(small, monkeypatch, isolated_results):
    calls = []
    original = cgan.CGAN.fit
    def counting_fit(self, *args, **kwargs):
        calls.append(kwargs.get("seed"))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(cgan.CGAN, "fit", counting_fit)
    args = dict(train=small, data_key={"dataset": "digits", "n": 300, "subset_seed": 0}, config=FAST["cgan"],
                steps=STEPS, device="cpu", progress=False, threads=1)
    first = generators.fit_cached("cgan", seed=0, **args)
    second = generators.fit_cached("cgan", seed=0, **args)      # loaded from disk (the SN layers pickle)
    assert calls == [0]
    assert second is not first and torch.equal(flat_state(first), flat_state(second))
    assert torch.equal(first.sample(torch.arange(10), rng(0)), second.sample(torch.arange(10), rng(0)))
    assert len(list((isolated_results / "cache" / "generators").glob("*/key.json"))) == 1
    generators.fit_cached("cgan", seed=1, **args)                # another seed is another model
    assert calls == [0, 1]


@pytest.mark.parametrize("name", FAMILIES)
def test_nearby_latents_give_similar_images(fitted, name):
    gen = fitted[name]
    labels = torch.arange(40) % 10
    z = gen.sample_latents(labels, rng(0))
    eps = torch.randn(z.shape, generator=rng(1))
    base = gen.decode(z, labels)
    small_step = (gen.decode(z + 0.05 * eps, labels) - base).abs().mean()
    large_step = (gen.decode(z + 1.0 * eps, labels) - base).abs().mean()
    assert small_step < large_step


def test_pca_gaussian_samples_resemble_their_own_class(digits):
    gen = generators.create("pca_gaussian", (1, 8, 8), 10, n_components=32)
    gen.fit(digits.train, steps=1, seed=0, device="cpu", progress=False, threads=1)
    real = digits.train.images.float().div(255).flatten(1)
    class_means = torch.stack([real[digits.train.labels == c].mean(0) for c in range(10)])
    labels = torch.arange(10).repeat_interleave(50)
    dist = torch.cdist(gen.sample(labels, rng(0)).flatten(1), class_means)       # (500, 10)
    own = dist[torch.arange(500), labels]
    others = dist.masked_fill(torch.nn.functional.one_hot(labels, 10).bool(), float("nan")).nanmean(1)
    assert own.mean() < 0.8 * others.mean()
    assert (dist.argmin(1) == labels).float().mean() > 0.8        # nearest real class mean is the own class


@pytest.mark.parametrize("name", FAMILIES)
def test_whole_object_and_state_dict_round_trip(fitted, name):
    gen = fitted[name]
    buf = io.BytesIO()
    torch.save(gen, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    fresh = generators.create(name, (1, 8, 8), 10, **FAST[name])
    fresh.load_state_dict(gen.state_dict())
    labels = torch.arange(10)
    for other in (loaded, fresh):
        assert torch.equal(other.sample(labels, rng(0)), gen.sample(labels, rng(0)))


def test_parameter_bytes_counts_only_what_sampling_needs(fitted):
    k, d, n = 16, 64, 10
    assert generators.parameter_bytes(fitted["pca_gaussian"]) == 4 * (d + k * d + k + n * k + n * k * k)
    gan = fitted["cgan"]
    everything = sum(t.numel() * t.element_size() for t in gan.state_dict().values())
    assert 0 < generators.parameter_bytes(gan) < everything / 2      # not D, not the live G: only the EMA G


def test_truncation_bounds_the_latents(fitted):
    gen = fitted["cgan"]
    z = gen.sample_latents(torch.arange(100) % 10, rng(0), truncation=0.5)
    assert z.abs().max() <= 0.5 and z.std() > 0.1
    gen.truncation = 0.5
    try:
        assert torch.equal(gen.sample(torch.arange(10), rng(0)), gen.sample(torch.arange(10), rng(0), truncation=0.5))
    finally:
        gen.truncation = None
    with pytest.raises(ValueError, match="truncation"):
        gen.sample_latents(torch.arange(3), truncation=0.0)


def test_diff_augment_keeps_shape_and_passes_gradients():
    x = torch.rand(16, 1, 28, 28, requires_grad=True)
    y = cgan.diff_augment(x * 2 - 1, "translation_cutout", rng(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    y.sum().backward()
    assert x.grad.abs().sum() > 0
    assert torch.equal(cgan.diff_augment(x, "none", rng(0)), x)


@pytest.mark.parametrize("size", [8, 16, 28, 32])
@pytest.mark.parametrize("name", TRAINED)
def test_supported_sizes_decode_to_the_right_shape(name, size):
    gen = generators.create(name, (3, size, size), 4, **FAST[name])
    assert gen.sample(torch.arange(4), rng(0)).shape == (4, 3, size, size)


@pytest.mark.parametrize("call,match", [
    (lambda: generators.create("diffusion", (1, 8, 8), 10), "generator='diffusion'.*cgan, cvae, flow, pca_gaussian"),
    (lambda: generators.create("cgan", (1, 10, 10), 10), "image_shape.*8x8, 16x16, 28x28, 32x32"),
    (lambda: generators.create("cvae", (1, 28, 32), 10), "image_shape"),
    (lambda: generators.create("cgan", (8, 8), 10), "image_shape"),
    (lambda: generators.create("cgan", (1, 8, 8), 0), "num_classes"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, widht=32), "widht.*allowed keys"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, augment="mixup"), "augment"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, ema_start=1.0), "ema_start"),
    (lambda: generators.create("cvae", (1, 8, 8), 10, likelihood="poisson"), "likelihood"),
    (lambda: generators.create("pca_gaussian", (1, 8, 8), 10, shrinkage=2.0), "shrinkage"),
    (lambda: generators.create("flow", (1, 8, 8), 10, solver="rk4"), "solver='rk4'.*euler, heun, midpoint, ab2"),
    (lambda: generators.create("flow", (1, 8, 8), 10, sample_steps=0), "sample_steps=0"),
    (lambda: generators.create("flow", (1, 8, 8), 10, sample_steps=2.5), "sample_steps=2.5"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, r1_gamma=-1.0), "r1_gamma"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, mode_seeking=float("nan")), "mode_seeking"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, minibatch_std=1), "minibatch_std"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, latent_norms="yes"), "latent_norms.*True or False"),
    (lambda: generators.create("cgan", (1, 8, 8), 10, aux_class=-1.0), "aux_class"),
    (lambda: generators.create("cvae", (1, 8, 8), 10, free_bits=-0.5), "free_bits"),
    (lambda: generators.create("cvae", (1, 8, 8), 10, grad_clip=float("inf")), "grad_clip"),
    (lambda: generators.create("cvae", (1, 8, 8), 10, sample_noise=1.5), "sample_noise"),
    (lambda: generators.create("flow", (1, 8, 8), 10, p_uncond=0.0), "guidance.*p_uncond"),
    (lambda: generators.create("flow", (1, 8, 8), 10, ae_fraction=1.0), "ae_fraction"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_steps=-1), "reflow_steps=-1.*allowed"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_steps=2.5), "reflow_steps=2.5"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_steps=True, guidance=1.0), "reflow_steps=True"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_steps=10), "guidance=1.5 with reflow.*guidance=1.0"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_pairs=0), "reflow_pairs"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_teacher_steps=0), "reflow_teacher_steps"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_guidance=-1.0), "reflow_guidance"),
    (lambda: generators.create("flow", (1, 8, 8), 10, reflow_steps=5, guidance=1.0, p_uncond=0.0),
     "reflow_guidance.*p_uncond"),
])
def test_bad_arguments_raise_value_errors_naming_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_fit_and_sample_inputs_are_refused(fitted, small):
    gen = generators.create("pca_gaussian", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="steps"):
        gen.fit(small, steps=0, seed=0)
    with pytest.raises(ValueError, match="image_shape"):
        generators.create("pca_gaussian", (1, 28, 28), 10).fit(small, steps=1, seed=0)
    only_some = small.take(np.flatnonzero(small.labels.numpy() < 5))
    with pytest.raises(ValueError, match=r"class\(es\) \[5, 6, 7, 8, 9\]"):
        gen.fit(only_some, steps=1, seed=0)
    with pytest.raises(ValueError, match="labels"):
        fitted["cvae"].sample(torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="z must have shape"):
        fitted["cvae"].decode(torch.zeros(2, 99), torch.tensor([0, 1]))


def test_flow_sampler_is_deterministic_and_guidance_changes_samples(fitted):
    gen = fitted["flow"]
    z, labels = gen.sample_latents(torch.arange(10), rng(3)), torch.arange(10)
    assert torch.equal(gen.decode(z, labels), gen.decode(z, labels))       # an ODE, no noise added
    gen.config["guidance"] = 1.0
    try:
        plain = gen.decode(z, labels)
    finally:
        gen.config["guidance"] = FAST["flow"].get("guidance", 1.5)
    assert not torch.equal(plain, gen.decode(z, labels))      # guidance mixes in the unconditional velocity
    # the autoencoder stage ran first, then the flow, splitting the steps
    assert gen.history["ae_steps"] + gen.history["flow_steps"] == STEPS


def test_identity_changes_when_a_default_or_the_code_version_changes(monkeypatch):
    """Grid cells that scored a family's default model key on this, so a new default reruns them."""
    from synthstudy import runs
    before = runs.stable_hash(generators.identity("flow"))
    assert generators.identity("flow")["defaults"]["ae_fraction"] == 0.6
    cls, version = generators._REGISTRY["flow"]
    monkeypatch.setitem(generators._REGISTRY, "flow", (cls, version + 1))
    assert runs.stable_hash(generators.identity("flow")) != before
    monkeypatch.setitem(generators._REGISTRY, "flow", (cls, version))
    defaults = list(cls.__init__.__defaults__)
    defaults[defaults.index(0.6)] = 0.5                                  # another ae_fraction default
    monkeypatch.setattr(cls.__init__, "__defaults__", tuple(defaults))
    assert generators.identity("flow")["defaults"]["ae_fraction"] == 0.5
    assert runs.stable_hash(generators.identity("flow")) != before


# ---------------------------------------------------------------- sampler and regulariser options (issue 17)
@pytest.mark.parametrize("solver,evaluations", [("euler", 4), ("heun", 8), ("midpoint", 8), ("ab2", 5)])
def test_flow_solvers_are_deterministic_and_count_their_evaluations(fitted, solver, evaluations, monkeypatch):
    gen = fitted["flow"]                                          # FAST: sample_steps=4
    monkeypatch.setitem(gen.config, "solver", solver)
    calls = []
    hook = gen.velocity.register_forward_hook(lambda *args: calls.append(1))
    z, labels = gen.sample_latents(torch.arange(10), rng(0)), torch.arange(10)
    try:
        x = gen.decode(z, labels)
    finally:
        hook.remove()
    assert len(calls) == gen.function_evaluations() == evaluations
    assert x.shape == (10, 1, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert torch.equal(gen.decode(z, labels), x)


def test_flow_solvers_agree_more_with_more_steps(fitted, monkeypatch):
    """Every solver integrates the same ODE: with many steps they meet; with one step Euler is off."""
    gen = fitted["flow"]
    z, labels = gen.sample_latents(torch.arange(10), rng(1)), torch.arange(10)

    def decode(solver, steps):
        monkeypatch.setitem(gen.config, "solver", solver)
        monkeypatch.setitem(gen.config, "sample_steps", steps)
        return gen.decode(z, labels)

    reference = decode("heun", 64)
    for solver in ("midpoint", "ab2", "euler"):
        assert (decode(solver, 64) - reference).abs().max() < (decode("euler", 1) - reference).abs().max()


def test_r1_penalty_is_the_squared_input_gradient():
    x = torch.randn(6, 1, 8, 8, requires_grad=True)
    weight = torch.randn(1, 1, 8, 8, requires_grad=True)
    out = (x * weight).sum(dim=(1, 2, 3))                       # D(x) = <w, x>: gradient w for every image
    penalty = cgan.r1_penalty(out, x)
    assert torch.allclose(penalty, weight.pow(2).sum())
    penalty.backward()                                           # D's step back-propagates through it
    assert torch.allclose(weight.grad, 2 * weight)


def test_mode_seeking_loss_punishes_identical_pairs():
    z = torch.randn(8, 4)
    collapsed = torch.zeros(8, 1, 8, 8, requires_grad=True)
    varied = torch.rand(8, 1, 8, 8)
    assert cgan.mode_seeking_loss(collapsed, z) > 100 * cgan.mode_seeking_loss(varied, z)
    cgan.mode_seeking_loss(collapsed + 0.01 * torch.rand(8, 1, 8, 8), z).backward()
    assert collapsed.grad.abs().sum() > 0


def test_minibatch_std_groups_never_mix_real_and_fake():
    layer = cgan.MinibatchStd(group=4)
    real, fake = torch.randn(8, 3, 4, 4), torch.zeros(8, 3, 4, 4)     # identical fakes: zero spread
    out = layer(torch.cat([real, fake]))
    assert out.shape == (16, 4, 4, 4)
    assert (out[:8, 3] > 0.1).all() and (out[8:, 3] < 1e-3).all()
    assert layer(torch.randn(6, 3, 4, 4)).shape == (6, 4, 4, 4)        # a batch the group does not divide


def test_cgan_regularisers_train_deterministically_and_log_the_penalty(small):
    options = {"r1_gamma": 1.0, "mode_seeking": 1.0, "minibatch_std": True}
    first, again = fit("cgan", small, **options), fit("cgan", small, **options)
    assert torch.equal(flat_state(first), flat_state(again))
    assert len(first.history["r1"]) > 0 and all(v > 0 for _, v in first.history["r1"])
    assert not torch.equal(first.sample(torch.arange(10), rng(0)), fit("cgan", small).sample(torch.arange(10), rng(0)))


def test_cgan_latent_norms_let_z_modulate_every_norm_and_leave_default_keys_alone(small):
    default = generators.create("cgan", (1, 8, 8), 10, **FAST["cgan"])
    assert "latent_norms" not in default.config      # earlier cache keys and run records stay valid
    gen, again = fit("cgan", small, latent_norms=True), fit("cgan", small, latent_norms=True)
    assert torch.equal(flat_state(gen), flat_state(again))
    norms = [m for m in gen.g.modules() if isinstance(m, cgan.CondBatchNorm2d)]
    assert norms and all(m.from_latent.abs().sum() > 0 for m in norms)   # trained away from their zero start
    assert all(getattr(m, "from_latent", None) is None for m in default.g.modules()
               if isinstance(m, cgan.CondBatchNorm2d))
    h, y = torch.randn(4, norms[0].gain.embedding_dim, 2, 2), torch.zeros(4, dtype=torch.long)
    z = torch.randn(4, FAST["cgan"]["latent_dim"])
    norms[0].eval()
    assert not torch.allclose(norms[0](h, y, z), norms[0](h, y, torch.zeros_like(z)))


def test_cgan_class_head_learns_the_real_classes_and_is_absent_by_default(small):
    default = generators.create("cgan", (1, 8, 8), 10, **FAST["cgan"])
    assert "aux_class" not in default.config and default.d.classify is None
    torch.manual_seed(0)                   # the untrained head's accuracy depends on its random init
    untrained = generators.create("cgan", (1, 8, 8), 10, **FAST["cgan"], aux_class=1.0)
    gen = fit("cgan", small, steps=300, aux_class=1.0)
    assert torch.equal(flat_state(gen), flat_state(fit("cgan", small, steps=300, aux_class=1.0)))

    def head_accuracy(model):
        model.d.eval()
        with torch.no_grad():
            _, logits = model.d(small.images.float().div(255).mul(2).sub(1), small.labels)
        return (logits.argmax(1) == small.labels).float().mean().item()
    assert head_accuracy(gen) > head_accuracy(untrained) + 0.1      # measured: 0.08 -> 0.23 at 300 steps


def test_cgan_objectives_add_every_weighted_term_and_train_the_class_head_on_real_images_only():
    torch.manual_seed(0)
    b = 4
    out_real, out_fake, labels = torch.randn(b), torch.randn(b), torch.arange(b)
    logits = torch.randn(2 * b, 10, requires_grad=True)
    hinge = torch.relu(1 - out_real).mean() + torch.relu(1 + out_fake).mean()
    ce_real = torch.nn.functional.cross_entropy(logits[:b], labels)
    d_loss, class_ce, total = cgan.discriminator_objective(out_real, out_fake, logits, labels, 2.0, torch.tensor(0.5))
    assert torch.allclose(d_loss, hinge) and torch.allclose(class_ce, ce_real)
    assert torch.allclose(total, hinge + 2.0 * ce_real + 0.5)               # aux and R1 together
    total.backward()
    assert logits.grad[:b].abs().sum() > 0 and logits.grad[b:].abs().sum() == 0   # fakes do not train the head
    assert torch.allclose(cgan.discriminator_objective(out_real, out_fake, None, labels, 0.0)[2], hinge)

    fake, z, g_logits = torch.rand(b, 1, 8, 8), torch.randn(b, 8), torch.randn(b, 10)
    g_hinge = -out_fake.mean()
    ce_fake = torch.nn.functional.cross_entropy(g_logits, labels)
    g_loss, g_total = cgan.generator_objective(out_fake, g_logits, labels, 2.0, fake, z, 3.0)
    assert torch.allclose(g_loss, g_hinge)
    assert torch.allclose(g_total, g_hinge + 2.0 * ce_fake + 3.0 * cgan.mode_seeking_loss(fake, z))   # both terms


def test_a_cgan_pickled_before_latent_norms_and_the_class_head_still_samples(fitted):
    gen = fitted["cgan"]
    before = gen.sample(torch.arange(10), rng(0))
    old = io.BytesIO()
    torch.save(gen, old)
    old.seek(0)
    legacy = torch.load(old, weights_only=False)
    for module in [*legacy.g.modules(), *legacy.g_ema.modules(), legacy.d]:   # as an older class pickled them
        module.__dict__.pop("from_latent", None)
        module.__dict__.pop("classify", None)
    assert torch.equal(legacy.sample(torch.arange(10), rng(0)), before)
    assert legacy.d(torch.zeros(2, 1, 8, 8), torch.arange(2))[1] is None


def test_cvae_free_bits_and_clipping_train_deterministically(small):
    options = {"free_bits": 0.5, "grad_clip": 1.0}
    first, again = fit("cvae", small, **options), fit("cvae", small, **options)
    assert torch.equal(flat_state(first), flat_state(again))
    assert not torch.equal(flat_state(first), flat_state(fit("cvae", small)))


def test_fit_cached_reuses_a_flow_for_another_sampler(small, monkeypatch):
    """Solver, steps and guidance change samples, not weights: the cache key leaves them out."""
    from synthstudy.generators import flow
    calls = []
    original = flow.FlowMatching.fit
    monkeypatch.setattr(flow.FlowMatching, "fit", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    args = dict(train=small, data_key={"dataset": "digits", "n": 300, "subset_seed": 0}, steps=STEPS, seed=0,
                device="cpu", progress=False, threads=1)
    first = generators.fit_cached("flow", config=FAST["flow"], **args)
    second = generators.fit_cached("flow", config={**FAST["flow"], "solver": "euler", "sample_steps": 2}, **args)
    assert calls == [1]
    assert (second.config["solver"], second.config["sample_steps"]) == ("euler", 2)
    assert first.config["solver"] == generators.config_options("flow")["solver"]
    assert torch.equal(flat_state(first), flat_state(second))


def test_cvae_sample_noise_is_seeded_and_leaves_decode_alone(fitted, monkeypatch):
    gen, labels = fitted["cvae"], torch.arange(10)
    clean = gen.sample(labels, rng(0))
    monkeypatch.setitem(gen.config, "sample_noise", 0.2)
    noisy = gen.sample(labels, rng(0))
    assert torch.equal(noisy, gen.sample(labels, rng(0))) and not torch.equal(noisy, clean)
    assert noisy.min() >= 0 and noisy.max() <= 1 and (noisy - clean).std() > 0.05
    z = gen.sample_latents(labels, rng(0))
    assert torch.equal(gen.decode(z, labels), clean)                  # latent views stay noise-free


# ---------------------------------------------------------------- reflow (issue 17: fast sampling)
def test_reflow_straightens_the_flow_so_one_euler_step_lands_near_the_teacher(small):
    """The student learns straight paths to the teacher's endpoints: one Euler step from the same noise lands
    closer to the teacher's many-step Heun endpoint than the teacher's own one Euler step does."""
    teacher = fit("flow", small, steps=400, p_uncond=0.1, hidden=64, blocks=2)
    student = fit("flow", small, steps=400, p_uncond=0.1, hidden=64, blocks=2, guidance=1.0, reflow_steps=300,
                  reflow_pairs=2000, reflow_teacher_steps=8)
    # the same seed trains the same teacher first (on CPU): the student's pairs come from exactly this network
    assert student.history["losses"] == teacher.history["losses"]
    assert len(student.history["reflow_losses"]) > 0
    z, labels = teacher.sample_latents(torch.arange(10).repeat(20), rng(5)), torch.arange(10).repeat(20)
    with torch.no_grad():
        target = teacher._integrate(z, labels, "heun", 8, 1.5)
        teacher_one = teacher._integrate(z, labels, "euler", 1, 1.5)
        student_one = student._integrate(z, labels, "euler", 1)
    error_student = (student_one - target).pow(2).mean()
    error_teacher = (teacher_one - target).pow(2).mean()
    print(f"one Euler step vs the teacher's Heun-8 endpoint: student {error_student:.4f}, teacher {error_teacher:.4f}")
    assert error_student < 0.5 * error_teacher


def test_reflow_options_at_their_neutral_values_leave_every_key_as_it_was(small, monkeypatch, isolated_results):
    """The reflow options came after the study's records: off, they are in neither the model cache's key nor a
    cell's identity (so no recorded cell reruns); on, the key changes (a reflowed model is another model)."""
    from synthstudy import runs
    assert not any(k.startswith("reflow_") for k in generators.identity("flow")["defaults"])
    keys, configs = [], []
    monkeypatch.setattr(runs, "cached", lambda kind, key, build, resumable=False: keys.append(runs.stable_hash(key))
                        or configs.append(key["config"]) or build())
    args = dict(train=small, data_key={"dataset": "digits", "n": 300, "subset_seed": 0}, steps=STEPS, seed=0,
                device="cpu", progress=False, threads=1)
    generators.fit_cached("flow", config=FAST["flow"], **args)
    generators.fit_cached("flow", config={**FAST["flow"], "reflow_steps": 0, "reflow_pairs": 7}, **args)   # off: inert
    generators.fit_cached("flow", config={**FAST["flow"], "reflow_steps": 2, "reflow_pairs": 64, "guidance": 1.0},
                          **args)
    assert keys[0] == keys[1] != keys[2]
    assert not any(k.startswith("reflow_") for k in configs[0])
    assert {k: configs[2][k] for k in ("reflow_steps", "reflow_pairs", "reflow_guidance", "reflow_teacher_steps")} \
        == {"reflow_steps": 2, "reflow_pairs": 64, "reflow_guidance": 1.5, "reflow_teacher_steps": 8}


@pytest.mark.parametrize("size", [7, 4])
def test_upsampled_conv_equals_upsampling_then_the_convolution(size):
    """The decoder's folded (transposed-convolution) form computes what nearest upsampling + the 3x3 convolution
    compute, so sampling got faster without changing a model's samples (beyond float rounding)."""
    from torch import nn

    from synthstudy.generators import flow
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1)
    x = torch.randn(3, 6, size, size + 1)
    expected = conv(nn.Upsample(scale_factor=2, mode="nearest")(x))
    assert torch.allclose(flow.upsampled_conv(x, conv), expected, atol=1e-5)
    decoder = flow._AutoEncoder(1, 4, 2, 4).decoder.eval()
    z = torch.randn(8, 4, 7, 7)
    folded = []
    original = flow.upsampled_conv
    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(flow, "upsampled_conv", lambda x, conv: folded.append(1) or original(x, conv))
        assert torch.allclose(flow.run_decoder(decoder, z), decoder(z), atol=1e-5)
    assert len(folded) == 2                       # both upsampling stages ran folded, none fell back


# ---------------------------------------------------------------- classifier-filtered sampling (GaFi's filter)
class _MislabellingGenerator:
    """A stub generator whose image of class c is a flat grey level (c + 0.5) / 10; with probability `wrong` it
    draws another class's level instead (a planted class-fidelity defect the filter must remove)."""
    num_classes, image_shape = 10, (1, 4, 4)

    def __init__(self, wrong: float):
        self.wrong = wrong

    def check_labels(self, labels):
        return torch.as_tensor(labels).long()

    def to(self, device):
        return self

    def evaluations_per_sample(self):
        return 1

    def sample(self, labels, rng=None):
        shown = torch.where(torch.rand(len(labels), generator=rng) < self.wrong,
                            torch.randint(0, 10, (len(labels),), generator=rng), labels)
        return ((shown.float() + 0.5) / 10)[:, None, None, None].expand(-1, 1, 4, 4).clone()


class _GreyLevelJudge(torch.nn.Module):
    """A perfect classifier of the stub's images (model input in [-1, 1]): the class whose grey level is nearest."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2000.0))

    def forward(self, x):
        level = (x.mean(dim=(1, 2, 3)) + 1) / 2
        centres = (torch.arange(10).float() + 0.5) / 10
        return -self.scale * (level[:, None] - centres[None]) ** 2


def _shown_class(images):
    return (images.mean(dim=(1, 2, 3)) * 10).floor().long()


def test_the_classifier_filter_removes_planted_wrong_class_samples_and_keeps_the_rest():
    gen = _MislabellingGenerator(wrong=0.3)
    labels = torch.arange(2000) % 10
    unfiltered = gen.sample(labels, rng=torch.Generator().manual_seed(0))
    assert (_shown_class(unfiltered) != labels).float().mean() > 0.2      # the planted defect is there
    filtered = ClassifierFiltered(gen, _GreyLevelJudge(), threshold=0.9)
    kept = filtered.sample(labels, rng=torch.Generator().manual_seed(0))
    assert torch.equal(_shown_class(kept), labels)                       # and gone after filtering
    assert 0.65 < filtered.acceptance < 0.8                               # 1 - 0.3 * 9/10 of draws pass
    assert filtered.evaluations_per_sample() == pytest.approx(1 / filtered.acceptance)
    again = ClassifierFiltered(gen, _GreyLevelJudge(), threshold=0.9).sample(labels,
                                                                             rng=torch.Generator().manual_seed(0))
    assert torch.equal(kept, again)                                      # same rng, same images
    pool = generators.sample_pool(filtered, 100, seed=1)                 # serves as a pool's generator
    assert torch.equal(_shown_class(pool.images.float() / 255), pool.labels)


def test_the_classifier_filter_refuses_bad_thresholds_and_names_classes_it_cannot_fill():
    for bad in (0, 1, 1.5, -0.1, True, "0.9", float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            ClassifierFiltered(_MislabellingGenerator(0.0), _GreyLevelJudge(), threshold=bad)
    always_wrong = ClassifierFiltered(_MislabellingGenerator(wrong=1.0), _GreyLevelJudge(), threshold=0.9,
                                      max_rounds=2)
    with pytest.raises(ValueError, match="still rejected after max_rounds=2.*lower the threshold"):
        always_wrong.sample(torch.arange(50) % 10, rng=torch.Generator().manual_seed(0))


class Killed(Exception):
    """Stands for the process being killed just after a snapshot was written."""


def fit_killed_after(monkeypatch, train, path, snapshots: int, steps: int, family: str = "flow", **config):
    """A `family` fit snapshotting after every step, killed right after its `snapshots`-th snapshot."""
    from synthstudy.generators import base
    written, original = [], base.FitCheckpoint.save

    def save_then_die(self, **state):
        original(self, **state)
        written.append((state["stage"], state["step"]))
        if len(written) == snapshots:
            raise Killed
    monkeypatch.setattr(base.FitCheckpoint, "save", save_then_die)
    gen = generators.create(family, (1, 8, 8), 10, **{**FAST[family], **config})
    with pytest.raises(Killed):
        gen.fit(train, steps=steps, seed=0, device="cpu", progress=False, threads=1, checkpoint=path,
                checkpoint_every=1e-9)
    monkeypatch.setattr(base.FitCheckpoint, "save", original)
    return written[-1]


@pytest.mark.parametrize("snapshots,config", [
    (5, {"log_every": 3}),                       # killed in the autoencoder stage (ae_fraction 0.6 of 20 steps),
                                                 # its curve partly logged (points at steps 3, 6, ... restored)
    (15, {"log_every": 3}),                      # in the flow stage, the autoencoder's curve restored
    (21, {"reflow_steps": 4, "reflow_pairs": 64, "guidance": 1.0}),   # at the reflow snapshot: reflow restarts
])
def test_a_killed_flow_fit_resumes_from_its_snapshot_and_ends_bit_identical(small, monkeypatch, tmp_path, snapshots,
                                                                          config):
    straight = fit("flow", small, steps=20, **config)
    path = tmp_path / "checkpoint.pt"
    stage, step = fit_killed_after(monkeypatch, small, path, snapshots, steps=20, **config)
    assert path.is_file()
    resumed = generators.create("flow", (1, 8, 8), 10, **{**FAST["flow"], **config})
    resumed.fit(small, steps=20, seed=0, device="cpu", progress=False, threads=1, checkpoint=path,
                checkpoint_every=1e-9)
    assert resumed.history["resumed_at"] == f"{stage} step {step}, snapshot taken on cpu with 1 CPU thread"
    assert (stage, step) == {5: ("ae", 5), 15: ("flow", 3), 21: ("reflow", 0)}[snapshots]
    assert torch.equal(flat_state(resumed), flat_state(straight))
    for curve in ("ae_losses", "losses", "reflow_losses"):
        assert resumed.history.get(curve) == straight.history.get(curve)
    assert torch.equal(resumed.sample(torch.arange(10), rng(0)), straight.sample(torch.arange(10), rng(0)))


def test_a_snapshot_of_another_fit_is_refused_and_a_family_that_cannot_resume_says_so(small, monkeypatch, tmp_path):
    path = tmp_path / "checkpoint.pt"
    fit_killed_after(monkeypatch, small, path, 3, steps=20)
    other = generators.create("flow", (1, 8, 8), 10, **FAST["flow"])
    with pytest.raises(ValueError, match="holds a fit of .* delete it to start this fit from scratch"):
        other.fit(small, steps=40, seed=0, device="cpu", progress=False, threads=1, checkpoint=path)
    other_data = small.take(np.arange(len(small))[::-1].copy())               # the same images in another order
    with pytest.raises(ValueError, match="holds a fit of"):
        other.fit(other_data, steps=20, seed=0, device="cpu", progress=False, threads=1, checkpoint=path)
    from synthstudy.generators import flow
    monkeypatch.setattr(flow.FlowMatching, "_fit", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        other.fit(small, steps=20, seed=0, device="cpu", progress=False, threads=1, checkpoint=path)
    assert not hasattr(other, "checkpoint")                  # a failed fit leaves no snapshot to pickle with the model
    vae = generators.create("cvae", (1, 8, 8), 10, **FAST["cvae"])
    with pytest.raises(ValueError, match="checkpoint=.*the cvae family's fit cannot resume; allowed: None"):
        vae.fit(small, steps=2, seed=0, device="cpu", progress=False, checkpoint=path)


@pytest.mark.parametrize("config", [
    {"log_every": 3},                                              # the defaults, curve partly logged at the kill
    {"log_every": 3, "r1_gamma": 1.0, "aux_class": 1.0, "mode_seeking": 1.0, "ema_start": 0.2},  # lazy R1's phase,
])                                                                 # class term, and a kill inside the EMA's span
def test_a_killed_cgan_fit_resumes_from_its_snapshot_and_ends_bit_identical(small, monkeypatch, tmp_path, config):
    straight = fit("cgan", small, steps=20, **config)
    path = tmp_path / "checkpoint.pt"
    stage, step = fit_killed_after(monkeypatch, small, path, 7, steps=20, family="cgan", **config)
    assert (stage, step) == ("gan", 7)
    resumed = generators.create("cgan", (1, 8, 8), 10, **{**FAST["cgan"], **config})
    resumed.fit(small, steps=20, seed=0, device="cpu", progress=False, threads=1, checkpoint=path,
                checkpoint_every=1e-9)
    assert resumed.history["resumed_at"] == "gan step 7, snapshot taken on cpu with 1 CPU thread"
    assert torch.equal(flat_state(resumed), flat_state(straight))
    for curve in ("d_loss", "g_loss", "d_real", "d_fake", "r1", "class_ce"):
        assert resumed.history.get(curve) == straight.history.get(curve)
    assert torch.equal(resumed.sample(torch.arange(10), rng(0)), straight.sample(torch.arange(10), rng(0)))


def test_fit_cached_resumes_a_killed_flow_from_the_cache_folder_and_then_deletes_the_snapshot(small, monkeypatch,
                                                                                            isolated_results):
    from synthstudy.generators import base
    args = dict(train=small, data_key={"dataset": "digits", "n": 300, "subset_seed": 0}, steps=20, seed=0,
                config=FAST["flow"], device="cpu", progress=False, threads=1)
    original_fit = base.Generator.fit
    monkeypatch.setattr(base.Generator, "fit", lambda self, *a, **k: original_fit(self, *a, **{
        **k, "checkpoint_every": 1e-9}))
    original_save, saves = base.FitCheckpoint.save, []

    def save_then_die(self, **state):
        original_save(self, **state)
        saves.append(state["step"])
        if len(saves) == 15:
            raise Killed
    monkeypatch.setattr(base.FitCheckpoint, "save", save_then_die)
    with pytest.raises(Killed):
        generators.fit_cached("flow", **args)
    folders = list((isolated_results / "cache" / "generators").glob("*"))
    assert [p.name for p in folders[0].iterdir() if not p.name.startswith(".")] == ["checkpoint.pt"]
    monkeypatch.setattr(base.FitCheckpoint, "save", original_save)
    gen = generators.fit_cached("flow", **args)
    assert gen.history["resumed_at"].startswith("flow step 3,")     # 12 autoencoder steps, then 3 of the flow
    assert sorted(p.name for p in folders[0].iterdir() if not p.name.startswith(".")) == ["artifact.pt", "key.json"]
    assert torch.equal(flat_state(gen), flat_state(fit("flow", small, steps=20)))
