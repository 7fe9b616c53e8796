import pytest

from synthstudy import config, data

GOOD = dict(profile="smoke", dataset="digits", device="cpu", seeds=[0, 1, 2], train_sizes=[50, "all"],
            val_size=100, model="cnn", epochs=1.0, min_steps=10, max_steps=10, batch_size=32, lr=0.1,
            augment="flip_crop")


def test_good_parameters_pass_and_resolve_all():
    p = config.validate(config.BaselineParams, GOOD)
    assert p.resolved_sizes() == [50, 1248]


@pytest.mark.parametrize("field,value,expected", [
    ("dataset", "mnist", "fashion_mnist"),
    ("model", "vgg99", "cnn"),
    ("augment", "mixup", "flip_crop"),
    ("tta", "tencrop", "flip_shift"),
    ("device", "tpu", "auto"),
    ("model", "timm:resnet_does_not_exist", "timm has no model"),
    ("min_steps", 0, "greater than 0"),
    ("epochs", -1, "greater than 0"),
    ("equivalence_margin", 0, "greater than 0"),
    ("budget_check_sizes", [100], "not in train_sizes"),
    ("batch_size", -1, "greater than 0"),
    ("lr", 0, "greater than 0"),
    ("seeds", [0, 1], "at least 3"),
    ("seeds", [1, 1, 2], "distinct"),
    ("train_sizes", [0, 10], "positive"),
    ("train_sizes", [5000], "1..1248"),
    ("val_size", 2000, "val_size"),
    ("profile", "../etc", "pattern"),
    ("max_steps", "many", "integer"),
])
def test_bad_values_name_the_parameter_and_what_is_allowed(field, value, expected):
    with pytest.raises(config.ParameterError) as err:
        config.validate(config.BaselineParams, {**GOOD, field: value})
    assert field in str(err.value) and expected in str(err.value)


def test_a_device_this_machine_lacks_is_refused_before_any_compute():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(config.ParameterError, match="(?s)'device'.*CUDA is not available.*auto, cpu"):
        config.validate(config.BaselineParams, {**GOOD, "device": "cuda"})


def test_min_steps_above_max_steps_is_refused():
    with pytest.raises(config.ParameterError, match="min_steps=20 must be <= max_steps=10"):
        config.validate(config.BaselineParams, {**GOOD, "min_steps": 20})


def test_the_budget_follows_n_within_its_bounds():
    p = config.validate(config.BaselineParams, {**GOOD, "epochs": 2.0, "min_steps": 5, "max_steps": 50})
    assert [p.steps_for(n) for n in (10, 320, 3200)] == [5, 20, 50]     # floor, 2 x 320 / 32, cap
    assert p.steps_for(320, factor=2) == 40
    assert p.recipe_key()["classifier_version"] >= 2


def test_all_problems_are_reported_at_once():
    with pytest.raises(config.ParameterError) as err:
        config.validate(config.BaselineParams, {**GOOD, "dataset": "x", "max_steps": -1, "typo_param": 3})
    msg = str(err.value)
    assert "'dataset'" in msg and "'max_steps'" in msg and "'typo_param'" in msg


def test_from_namespace_picks_the_schema_fields_and_reports_missing_ones():
    assert config.from_namespace(config.BaselineParams, {**GOOD, "np": object()}).max_steps == 10
    with pytest.raises(config.ParameterError, match="does not define"):
        config.from_namespace(config.BaselineParams, {k: v for k, v in GOOD.items() if k != "model"})


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_validates_for_the_baseline(profile):
    values = config.load_profile(profile)
    given = {k: v for k, v in values.items() if k in config.BaselineParams.model_fields}
    p = config.validate(config.BaselineParams, {**{k: v for k, v in values.items()
                                               if k in config.BaselineParams.model_fields}, "profile": profile})
    assert p.profile == profile and {k: getattr(p, k) for k in given} == given      # nothing dropped or changed


def test_unknown_profile_lists_the_allowed_ones():
    with pytest.raises(config.ParameterError, match="paper, quick, smoke"):
        config.load_profile("fast")


# ---------------------------------------------------------------- scaling notebook
SCALING = {**GOOD, "scaling_sizes": [100, "all"],
           "scaling_generators": ["pca_gaussian", "cvae"], "gen_steps": {"pca_gaussian": 1, "cvae": 30},
           "gen_seed": 0, "pool_multiples": [1, 10, 100], "mix_fractions": [0.5], "stream": False}


def test_scaling_resolves_all_and_clips_pools_to_the_images_a_classifier_sees():
    p = config.validate(config.ScalingParams, SCALING)
    assert p.resolved_sizes() == [100, 1248] and p.real_sizes() == [50, 100, 1248]     # train_sizes [50, "all"]
    # 10 steps (epochs 1 within [10, 10]) x batch 32 = 320 images seen: 1000 and 10000 are clipped to 320, once
    assert p.pool_sizes(100) == [100, 320] and p.pool_sizes(1248) == [320]
    # with the stream arm on, a pool the classifier sees exactly once per image duplicates it: dropped
    streaming = config.validate(config.ScalingParams, {**SCALING, "stream": True})
    assert streaming.pool_sizes(100) == [100] and streaming.pool_sizes(1248) == []


@pytest.mark.parametrize("field,value,expected", [
    ("scaling_sizes", [0, 100], "positive"),
    ("scaling_sizes", [100, 100], "distinct"),
    ("scaling_sizes", [5000], "1..1248"),
    ("train_sizes", [0], "positive"),
    ("train_sizes", [5000], "1..1248"),
    ("scaling_generators", ["gan"], "cvae"),
    ("pool_multiples", [0, 10], "positive"),
    ("mix_fractions", [0.0, 0.5], "strictly between 0 and 1"),
    ("mix_fractions", [1.0], "strictly between 0 and 1"),
    ("gen_steps", {"pca_gaussian": 1}, "cvae"),
    ("gen_steps", {"pca_gaussian": 1, "cvae": 0}, "greater than 0"),
    ("budget_check_sizes", [75], "not in train_sizes"),     # a budget check of cells the grid does not run
])
def test_scaling_bad_values_name_the_parameter_and_what_is_allowed(field, value, expected):
    with pytest.raises(config.ParameterError) as err:
        config.validate(config.ScalingParams, {**SCALING, field: value})
    assert expected in str(err.value) and (field in str(err.value) or "gen_steps" in str(err.value))


def test_scaling_refuses_a_grid_without_any_synthetic_arm():
    with pytest.raises(config.ParameterError, match="no synthetic arm"):
        config.validate(config.ScalingParams, {**SCALING, "pool_multiples": [], "mix_fractions": [], "stream": False})


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
def test_every_profile_validates_for_scaling(profile):
    values = config.load_profile(profile)
    given = {k: v for k, v in values.items() if k in config.ScalingParams.model_fields}
    p = config.validate(config.ScalingParams, {**{k: v for k, v in values.items()
                                              if k in config.ScalingParams.model_fields}, "profile": profile})
    assert p.profile == profile and {k: getattr(p, k) for k in given} == given


# ---------------------------------------------------------------- generators' CAS arm, multiview budget arms
def profile_params(profile: str, schema, **overrides):
    values = {k: v for k, v in config.load_profile(profile).items() if k in schema.model_fields}
    return config.validate(schema, {**values, "profile": profile, **overrides})


def test_cas_trains_on_a_pool_as_large_as_the_real_one_or_on_a_stream():
    from synthstudy import cells
    pool = profile_params("smoke", config.GeneratorsParams, cas_arm="pool")
    n_all = pool.resolve(["all"])[0]
    synthetic = [k for k in cells.cas_keys(pool) if k["arm"] != "real"]
    assert synthetic and {(k["arm"], k["m"], k["n"]) for k in synthetic} == {("pool", n_all, n_all)}
    stream = profile_params("smoke", config.GeneratorsParams, cas_arm="stream")
    synthetic = [k for k in cells.cas_keys(stream) if k["arm"] != "real"]
    assert {k["arm"] for k in synthetic} == {"stream"} and all("m" not in k for k in synthetic)
    # both grids share the real arm and its budget check: the baseline's cells, reused
    real = [k for k in cells.cas_keys(pool) if k["arm"] == "real"]
    assert real == [k for k in cells.cas_keys(stream) if k["arm"] == "real"]


def test_multiview_budget_check_runs_only_for_the_named_arms():
    from synthstudy import analysis_multiview as A
    both = profile_params("smoke", config.MultiviewParams, mv_budget_arms=["real", "synthetic"])
    real = profile_params("smoke", config.MultiviewParams, mv_budget_arms=["real"])

    def doubled(P):
        keys = A.reference_keys(P) + A.synthetic_keys(P, P.sigmas[0])
        return sorted((k["source"], k["seed"]) for k in keys if k.get("steps") == 2 * P.mv_steps)
    assert doubled(both) == sorted([("real", s) for s in both.seeds] + [("synthetic", s) for s in both.seeds])
    assert doubled(real) == sorted(("real", s) for s in real.seeds)


@pytest.mark.parametrize("schema,field,value,expected", [
    (config.GeneratorsParams, "cas_arm", "mix", "'pool' or 'stream'"),
    (config.MultiviewParams, "mv_budget_arms", ["supcon"], "'real' or 'synthetic'"),
    (config.MultiviewParams, "mv_budget_arms", [], "at least 1"),
])
def test_cas_arm_and_budget_arms_bad_values_name_the_parameter_and_what_is_allowed(schema, field, value, expected):
    with pytest.raises(config.ParameterError) as err:
        profile_params("smoke", schema, **{field: value})
    assert field in str(err.value) and expected in str(err.value)


def test_zoo_overrides_change_only_the_named_familys_keys_in_the_generators_notebook():
    from synthstudy import cells
    plain = profile_params("smoke", config.GeneratorsParams)
    flow = {"steps": 2 * plain.gen_steps["flow"], "guidance": 1.0}
    longer = profile_params("smoke", config.GeneratorsParams, zoo_overrides={"flow": flow})
    assert longer.generator_steps("flow") == flow["steps"] and longer.generator_config("flow") == {"guidance": 1.0}
    by_generator = {k["generator"]: k for k in cells.cas_keys(longer) if k["arm"] != "real"}
    assert by_generator["flow"]["gen_steps"] == flow["steps"] and by_generator["flow"]["gen_config"] == {
        "guidance": 1.0}
    # every other cell keeps the key it was recorded under (no gen_config where the defaults are used)
    others = [k for k in cells.cas_keys(longer) if k["generator"] != "flow"]
    assert others == [k for k in cells.cas_keys(plain) if k["generator"] != "flow"]
    assert all("gen_config" not in k for k in cells.cas_keys(plain))
    assert cells.quality_key(longer, "flow", {})["gen_config"] == {"guidance": 1.0}
    # the notebooks that share gen_steps (scaling here) know no overrides: their keys are the plain ones
    assert "zoo_overrides" not in config.ScalingParams.model_fields
    scaling = profile_params("smoke", config.ScalingParams)
    assert scaling.generator_key("flow") == plain.generator_key("flow") != longer.generator_key("flow")
    # a restated default changes no key, and 1 is read as the float the family stores
    restated = profile_params("smoke", config.GeneratorsParams, zoo_overrides={"flow": {"guidance": 1.5}})
    assert restated.generator_key("flow") == plain.generator_key("flow")
    as_int = profile_params("smoke", config.GeneratorsParams, zoo_overrides={"flow": {"guidance": 1}})
    assert as_int.generator_key("flow")["gen_config"] == {"guidance": 1.0}


def test_zoo_overrides_are_checked_on_the_datasets_own_image_shape(monkeypatch):
    built = []
    create = config.generators.create
    monkeypatch.setattr(config.generators, "create", lambda name, shape, n, **kw: built.append((shape, n))
                        or create(name, shape, n, **kw))
    profile_params("smoke", config.GeneratorsParams, zoo_overrides={"flow": {"guidance": 1.0}})   # digits, 8x8
    assert built == [((1, 8, 8), 10)]
    assert data.nominal_image_shape("imagefolder", 64) == (3, 64, 64)


@pytest.mark.parametrize("overrides, expected", [
    ({"cvae": {"steps": 10}}, "zoo_overrides names 'cvae', which is not in generator_names"),
    ({"flow": {"steps": 0}}, "zoo_overrides['flow']['steps']=0: allowed: a positive integer"),
    ({"flow": {"steps": True}}, "zoo_overrides['flow']['steps']=True: allowed: a positive integer"),
    ({"flow": {"guidence": 1.0}}, "zoo_overrides['flow']: generator='flow' has no config key(s) 'guidence'"),
    ({"flow": {"guidance": -1.0}}, "zoo_overrides['flow']: guidance"),
])
def test_zoo_overrides_bad_values_name_the_parameter_and_what_is_allowed(overrides, expected):
    with pytest.raises(config.ParameterError) as err:
        profile_params("smoke", config.GeneratorsParams, zoo_overrides=overrides,
                       generator_names=["pca_gaussian", "flow"], cas_generators=["flow"])
    assert expected in str(err.value)
