import pytest
import torch

from synthstudy import data, models, sources, train


def quick_cfg(**kw):
    # digits are not mirror-symmetric: translation only (1 px at 8x8)
    base = dict(steps=60, batch_size=64, lr=0.2, seed=0, device="cpu", progress=False, augment="crop")
    return train.TrainConfig(**{**base, **kw})


def fit_digits(digits, **kw):
    cfg = quick_cfg(**kw)
    model = models.create_model("cnn", 1, 10, 8, seed=cfg.seed)
    return train.fit(model, sources.ImageSetSource(digits.train), cfg), cfg


def test_learns_digits_far_above_chance(digits):
    result, cfg = fit_digits(digits)
    acc = train.evaluate(result.model, digits.test, cfg)["accuracy"]
    assert acc > 0.8, acc          # chance is 0.1
    assert result.losses[-1][1] < result.losses[0][1]


def test_same_seed_same_weights_other_seed_differs(digits):
    a, _ = fit_digits(digits, steps=15, seed=1)
    b, _ = fit_digits(digits, steps=15, seed=1)
    c, _ = fit_digits(digits, steps=15, seed=2)
    wa, wb, wc = (torch.cat([p.detach().flatten() for p in r.model.parameters()]) for r in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)


def test_augmentation_keeps_shape_and_range_and_moves_pixels():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 28, 28) * 2 - 1
    for kind in train.AUGMENTATIONS:
        y = train.augment_batch(x, kind, 2, gen)
        assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
        assert torch.equal(y, x) == (kind == "none")


def test_crop_is_a_pure_translation():
    gen = torch.Generator().manual_seed(0)
    x = -torch.ones(64, 1, 10, 10)
    x[:, :, 5, 5] = 1.0                                   # one bright pixel
    y = train.augment_batch(x, "crop", 2, gen)
    pos = (y[:, 0] == 1).flatten(1).float().argmax(1)
    rows, cols = pos // 10, pos % 10
    assert ((rows - 5).abs() <= 2).all() and ((cols - 5).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5   # shifts really vary per sample
    assert (y == 1).flatten(1).sum(1).eq(1).all()            # nothing duplicated or lost


def test_lr_schedule_warms_up_then_decays_to_zero():
    cfg = quick_cfg(steps=100, warmup=0.2, lr=1.0)
    lrs = [train.lr_at(s / 100, cfg) for s in range(100)]
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == 20
    assert lrs[0] < 0.1 and lrs[-1] < 0.02


def test_time_budget_stops_training_and_reports_steps_taken(digits):
    result, _ = fit_digits(digits, steps=10**6, max_seconds=1.0)
    assert 0 < result.steps < 10**6 and result.seconds < 3


def test_sets_smaller_than_a_batch_are_sampled_epoch_by_epoch():
    tiny = data.ImageSet(torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.arange(10))
    x, y = sources.ImageSetSource(tiny).next_batch(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 8, 8)
    for epoch in range(6):                       # each block of 10 is a full pass over the set
        assert sorted(y[epoch * 10:(epoch + 1) * 10].tolist()) == list(range(10))


@pytest.mark.parametrize("field,value", [("steps", 0), ("steps", -3), ("batch_size", 0), ("lr", 0.0),
                                         ("augment", "mixup"), ("device", "tpu"), ("warmup", 1.5)])
def test_bad_training_settings_are_refused_before_training(field, value):
    with pytest.raises(ValueError, match=field):
        quick_cfg(**{field: value})


def test_device_auto_picks_the_best_device_this_machine_has():
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    assert train.resolve_device("auto").type == expected
    assert train.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            train.resolve_device("cuda")


def test_loss_log_averages_each_term_between_points_and_stops_on_a_non_finite_mean():
    log = train.LossLog(every=2, total_steps=5, device=torch.device("cpu"), hint="lower lr=1",
                        terms=("loss", "kl"))
    for step in range(5):
        log.add(step, torch.tensor(float(step)), torch.tensor(10.0 * step))
    # points at steps 2, 4 and the last step (5), each the mean since the previous point
    assert log.series == {"loss": [(2, 0.5), (4, 2.5), (5, 4.0)], "kl": [(2, 5.0), (4, 25.0), (5, 40.0)]}
    assert log.points == log.series["loss"]
    single = train.LossLog(every=1, total_steps=3, device=torch.device("cpu"), hint="lower lr=0.1")
    single.add(0, torch.tensor(1.0))
    with pytest.raises(FloatingPointError, match="loss became nan at step 2; lower lr=0.1"):
        single.add(1, torch.tensor(float("nan")))


def test_setup_seeds_the_global_rng_and_returns_an_rng_with_the_same_seed():
    threads = torch.get_num_threads()
    try:
        device, rng = train.setup(seed=7, device="cpu", threads=1)
        assert device.type == "cpu" and torch.get_num_threads() == 1
        first = torch.rand(3), torch.rand(3, generator=rng)
        train.setup(seed=7, device="cpu", threads=1)
        assert torch.equal(first[0], torch.rand(3)) and torch.equal(first[0], first[1])
    finally:
        torch.set_num_threads(threads)
