import pytest

from synthstudy import config

GOOD = dict(profile="smoke", dataset="digits", device="cpu", seeds=[0, 1, 2], train_sizes=[50, "all"],
            val_size=100, model="cnn", steps=10, batch_size=32, lr=0.1, augment="flip_crop")


def test_good_parameters_pass_and_resolve_all():
    p = config.validate(config.BaselineParams, GOOD)
    assert p.resolved_sizes() == [50, 1248]


@pytest.mark.parametrize("field,value,expected", [
    ("dataset", "mnist", "fashion_mnist"),
    ("model", "vgg99", "cnn"),
    ("augment", "mixup", "flip_crop"),
    ("tta", "tencrop", "flip_shift"),
    ("device", "tpu", "auto"),
    ("steps", 0, "greater than 0"),
    ("batch_size", -1, "greater than 0"),
    ("lr", 0, "greater than 0"),
    ("seeds", [0, 1], "at least 3"),
    ("seeds", [1, 1, 2], "distinct"),
    ("train_sizes", [0, 10], "positive"),
    ("train_sizes", [5000], "1..1248"),
    ("val_size", 2000, "val_size"),
    ("profile", "../etc", "pattern"),
    ("steps", "many", "integer"),
])
def test_bad_values_name_the_parameter_and_what_is_allowed(field, value, expected):
    with pytest.raises(config.ParameterError) as err:
        config.validate(config.BaselineParams, {**GOOD, field: value})
    assert field in str(err.value) and expected in str(err.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(config.ParameterError) as err:
        config.validate(config.BaselineParams, {**GOOD, "dataset": "x", "steps": -1, "typo_param": 3})
    msg = str(err.value)
    assert "'dataset'" in msg and "'steps'" in msg and "'typo_param'" in msg


def test_from_namespace_picks_the_schema_fields_and_reports_missing_ones():
    assert config.from_namespace(config.BaselineParams, {**GOOD, "np": object()}).steps == 10
    with pytest.raises(config.ParameterError, match="does not define"):
        config.from_namespace(config.BaselineParams, {k: v for k, v in GOOD.items() if k != "model"})


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_every_profile_validates_for_the_baseline(profile):
    values = config.load_profile(profile)
    config.validate(config.BaselineParams, {**{k: v for k, v in values.items()
                                               if k in config.BaselineParams.model_fields}, "profile": profile})


def test_unknown_profile_lists_the_allowed_ones():
    with pytest.raises(config.ParameterError, match="smoke, quick|full, quick, smoke"):
        config.load_profile("fast")
