"""Pretrained generators (BigGAN, DiT) and the image-folder dataset, offline.

Each library's own format is used, with tiny randomly initialised models built here and saved to a temporary
folder (BigGAN: config.json + pytorch_model.bin; DiT: a DiTPipeline's save_pretrained), then loaded through the
adapter exactly as downloaded weights would be. Nothing touches the network: the download paths are tested with
`requests.head` replaced by a failing stub.
"""
import json

import numpy as np
import pytest
import torch

from synthstudy import config, contrastive, data, generators, imagefolder, sources
from synthstudy.generators import pretrained

biggan_lib = pytest.importorskip("pytorch_pretrained_biggan")
diffusers = pytest.importorskip("diffusers")

# Three ImageNet classes by WordNet id, as in an ImageNet-subset folder: goldfish, great white shark, tench.
WNIDS = ("n01443537", "n01484850", "n01440764")


@pytest.fixture(autouse=True)
def no_weights_env(monkeypatch):
    """No test may see a real weights folder or the network."""
    monkeypatch.delenv(pretrained.ENV_WEIGHTS, raising=False)
    monkeypatch.delenv(imagefolder.ENV_ROOT, raising=False)

    def offline(*args, **kwargs):
        import requests
        raise requests.ConnectionError("offline (test stub)")
    monkeypatch.setattr("requests.head", offline)


@pytest.fixture(scope="module")
def biggan_dir(tmp_path_factory):
    """A BigGAN-deep with tiny sizes (16x16 output, z_dim 8) in pytorch-pretrained-biggan's folder format."""
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig
    # channels go 16 -> 1 (x channel_width), halving at each block as in the real configs; two of them upsample
    cfg = BigGANConfig(output_dim=16, z_dim=8, class_embed_dim=8, channel_width=4, num_classes=1000,
                       layers=[(True, 16, 8), (False, 8, 4), (False, 4, 2), (True, 2, 1)],
                       attention_layer_position=1, n_stats=51)
    torch.manual_seed(0)
    model = BigGAN(cfg)
    # the library leaves the last batch norm's affine parameters uninitialised (torch.Tensor(n)): set them
    model.generator.bn.weight.data.fill_(1.0)
    model.generator.bn.bias.data.zero_()
    folder = tmp_path_factory.mktemp("biggan-deep-128")
    (folder / "config.json").write_text(cfg.to_json_string())
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def dit_dir(tmp_path_factory):
    """A DiT pipeline (1-layer transformer on 4x4x4 latents, 2-level VAE -> 8x8 images) saved with save_pretrained."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=1, norm_num_groups=4, sample_size=4, patch_size=2,
                                        num_embeds_ada_norm=1000)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        sample_size=8, layers_per_block=1)
    folder = tmp_path_factory.mktemp("dit-xl-2-256")
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler()).save_pretrained(folder)
    return folder


def make_biggan(biggan_dir, classes=data.CIFAR10_CLASSES, image_shape=(3, 16, 16), **config):
    return generators.create("biggan-deep-128", image_shape=image_shape, num_classes=len(classes),
                             classes=classes, pretrained_path=str(biggan_dir), device="cpu", **config)


def make_dit(dit_dir, classes=WNIDS, **config):
    config = {"num_inference_steps": 3, "allow_cpu_pretrained": True, **config}
    return generators.create("dit-xl-2-256", image_shape=(3, 8, 8), num_classes=len(classes), classes=classes,
                             pretrained_path=str(dit_dir), device="cpu", **config)


def seeded(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- registry
def test_registry_keeps_the_zoo_and_adds_pretrained_names():
    assert generators.available() == ["cgan", "cvae", "flow", "pca_gaussian"]
    assert set(pretrained.SPECS) <= set(generators.available(pretrained=True))
    assert generators.is_pretrained("biggan-deep-128") and not generators.is_pretrained("cgan")
    with pytest.raises(ValueError, match="biggan-deep-256.*dit-xl-2-256"):
        generators.create("biggan-deep-64", image_shape=(3, 32, 32), num_classes=10)


# ---------------------------------------------------------------- BigGAN
def test_biggan_samples_class_conditionally_in_range_and_deterministically(biggan_dir):
    gen = make_biggan(biggan_dir)
    labels = torch.arange(10).repeat(2)
    x = gen.sample(labels, rng=seeded(0))
    assert x.shape == (20, 3, 16, 16) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1 and x.std() > 0
    assert torch.equal(x, gen.sample(labels, rng=seeded(0)))                 # same seed, same images
    assert not torch.equal(x, gen.sample(labels, rng=seeded(1)))
    # CIFAR-10 classes have several ImageNet classes: z is BigGAN's 8 dims plus the class selector
    assert gen.latent_dim == 8 + 1 and gen.has_selector
    assert generators.parameter_bytes(gen) > 0
    assert gen.history["pretrained"] == "biggan-deep-128" and gen.history["seconds"] == 0.0


def assert_nearby_latents_decode_closer(gen, labels):
    """Latent views: z + 0.05 eps decodes closer to z's image than z + eps (and not to the same image)."""
    z = gen.sample_latents(labels, seeded(0))
    eps = torch.randn(z.shape, generator=seeded(1))
    x = gen.decode(z, labels)
    near = (gen.decode(z + 0.05 * eps, labels) - x).abs().mean()
    far = (gen.decode(z + 1.0 * eps, labels) - x).abs().mean()
    assert 0 < near < far


def test_biggan_latent_views_nearby_latents_give_similar_images(biggan_dir):
    gen = make_biggan(biggan_dir, classes=WNIDS)          # one ImageNet class each: the latent is BigGAN's z only
    assert gen.latent_dim == 8 and not gen.has_selector
    assert_nearby_latents_decode_closer(gen, torch.tensor([0, 1, 2] * 4))


def test_biggan_truncation_bounds_the_latent_and_is_checked(biggan_dir):
    gen = make_biggan(biggan_dir, classes=WNIDS, truncation=0.5)
    z = gen.sample_latents(torch.zeros(500, dtype=torch.long), seeded(0))
    assert z.abs().max() <= 0.5 * 2 + 1e-6                    # truncation x a normal truncated to [-2, 2]
    with pytest.raises(ValueError, match="truncation=1.5"):
        make_biggan(biggan_dir, classes=WNIDS, truncation=1.5)


def test_selector_draws_every_mapped_imagenet_class_and_only_those(biggan_dir):
    gen = make_biggan(biggan_dir)
    cat = data.CIFAR10_CLASSES.index("cat")
    labels = torch.full((2000,), cat)
    drawn = gen.imagenet_labels(labels, gen.sample_latents(labels, seeded(0)))
    assert set(drawn.tolist()) == set(pretrained.CIFAR10_TO_IMAGENET["cat"])
    counts = np.bincount(drawn.numpy())[list(pretrained.CIFAR10_TO_IMAGENET["cat"])]
    assert counts.min() > 300                                     # equal shares, 400 expected each


def test_grey_and_resized_output(biggan_dir):
    gen = make_biggan(biggan_dir, classes=WNIDS, image_shape=(1, 4, 4))
    x = gen.sample(torch.tensor([0, 1, 2]), rng=seeded(0))
    assert x.shape == (3, 1, 4, 4) and x.min() >= 0 and x.max() <= 1


def test_fit_is_a_no_op(biggan_dir, digits):
    gen = make_biggan(biggan_dir, classes=WNIDS)
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    history = gen.fit(digits.train, steps=10, seed=0)
    assert history["steps"] == 0
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())


# ---------------------------------------------------------------- DiT (diffusers)
def test_dit_samples_class_conditionally_in_range_and_deterministically(dit_dir):
    gen = make_dit(dit_dir)
    labels = torch.tensor([0, 1, 2, 0])
    x = gen.sample(labels, rng=seeded(0))
    assert x.shape == (4, 3, 8, 8) and torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, gen.sample(labels, rng=seeded(0)))
    assert not torch.equal(x, gen.sample(labels, rng=seeded(1)))
    assert gen.latent_dim == 4 * 4 * 4                          # the initial noise, flattened
    assert generators.parameter_bytes(gen) > 0


def test_dit_latent_is_the_initial_noise_and_nearby_noise_gives_similar_images(dit_dir):
    gen = make_dit(dit_dir, guidance_scale=1.0)
    assert_nearby_latents_decode_closer(gen, torch.tensor([0, 1, 2] * 3))


def test_dit_on_cpu_needs_consent(dit_dir):
    with pytest.raises(ValueError, match="allow_cpu_pretrained"):
        make_dit(dit_dir, allow_cpu_pretrained=False)


# ---------------------------------------------------------------- bad input, before any compute
def test_no_weights_source_names_both_parameters(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("nothing may be loaded when the weights' source is refused")
    monkeypatch.setattr("pytorch_pretrained_biggan.BigGAN.from_pretrained", never)
    with pytest.raises(ValueError, match="allow_download=true.*pretrained_path"):
        generators.create("biggan-deep-128", image_shape=(3, 32, 32), num_classes=10, classes=data.CIFAR10_CLASSES)


def test_download_on_an_offline_machine_fails_fast_with_a_clear_message(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("nothing may be downloaded or loaded when offline")
    monkeypatch.setattr("pytorch_pretrained_biggan.BigGAN.from_pretrained", never)
    with pytest.raises(ValueError, match="allow_download=true.*offline.*pretrained_path"):
        generators.create("biggan-deep-128", image_shape=(3, 32, 32), num_classes=10, classes=data.CIFAR10_CLASSES,
                          allow_download=True, device="cpu")
    with pytest.raises(ValueError, match="offline"):
        generators.create("dit-xl-2-256", image_shape=(3, 32, 32), num_classes=10, classes=data.CIFAR10_CLASSES,
                          allow_download=True, device="cpu", allow_cpu_pretrained=True)


def test_bad_weights_folders_are_named(tmp_path):
    with pytest.raises(ValueError, match="is not a folder"):
        make_biggan(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="lacks pytorch_model.bin"):
        make_biggan(tmp_path)


def test_weights_folder_from_the_environment(biggan_dir, tmp_path, monkeypatch):
    import shutil
    shutil.copytree(biggan_dir, tmp_path / "weights" / "biggan-deep-128")
    monkeypatch.setenv(pretrained.ENV_WEIGHTS, str(tmp_path / "weights"))
    assert pretrained.weights_folder("biggan-deep-128", None, False) == tmp_path / "weights" / "biggan-deep-128"
    gen = generators.create("biggan-deep-128", image_shape=(3, 16, 16), num_classes=3, classes=WNIDS, device="cpu")
    assert gen.history["weights"] == str(tmp_path / "weights" / "biggan-deep-128")


def test_classes_without_counterpart_are_listed_and_class_map_fixes_them(biggan_dir):
    digit_names = tuple(str(i) for i in range(10))
    with pytest.raises(ValueError, match=r"\['0', '1'.*no counterpart.*WordNet.*airplane.*class_map"):
        make_biggan(biggan_dir, classes=digit_names)
    class_map = {str(i): [i] for i in range(9)} | {"9": ["n01440764", 7]}
    gen = make_biggan(biggan_dir, classes=digit_names, class_map=class_map)
    assert gen.imagenet_labels(torch.tensor([3]), torch.zeros(1, gen.latent_dim)).item() == 3
    with pytest.raises(ValueError, match="not study classes"):
        make_biggan(biggan_dir, classes=WNIDS, class_map={"cat": [281]})
    with pytest.raises(ValueError, match="neither an ImageNet class index"):
        make_biggan(biggan_dir, classes=("x",), class_map={"x": [1000]})


def test_classes_must_match_num_classes_and_shapes_must_be_square(biggan_dir):
    with pytest.raises(ValueError, match="classes=<the study's class names>"):
        generators.create("biggan-deep-128", image_shape=(3, 16, 16), num_classes=10,
                          pretrained_path=str(biggan_dir), device="cpu")
    with pytest.raises(ValueError, match="square RGB"):
        make_biggan(biggan_dir, image_shape=(3, 16, 8))


# ---------------------------------------------------------------- through the notebooks' helpers
def test_fit_on_subset_returns_the_loaded_model_and_caches_nothing(biggan_dir, isolated_results):
    pool = data.ImageSet(torch.zeros(30, 3, 16, 16, dtype=torch.uint8), torch.arange(3).repeat(10))
    params = type("P", (), {"allow_download": False, "pretrained_path": str(biggan_dir),
                            "allow_cpu_pretrained": False})()
    gen, idx = generators.fit_on_subset("biggan-deep-128", pool, dataset="imagefolder", n="all", subset_seed=0,
                                        steps=1, seed=0, config=generators.study_config("biggan-deep-128", params,
                                                                                        WNIDS), device="cpu")
    assert isinstance(gen, pretrained.PretrainedGenerator) and gen.num_classes == 3 and len(idx) == 30
    assert not (isolated_results / "cache" / "generators").exists()
    assert generators.study_config("cgan", params, WNIDS) == {}
    # what the scaling and multiview notebooks do with a generator: fixed pools, streams, latent views
    pool_set = generators.sample_pool(gen, 12, seed=0)
    assert pool_set.images.dtype == torch.uint8 and pool_set.images.shape == (12, 3, 16, 16)
    x, y = sources.GeneratorStream(gen, num_classes=3).next_batch(6, seeded(0))
    assert x.shape == (6, 3, 16, 16) and y.shape == (6,)
    views = contrastive.make_views("latent", gen=gen, sigma=0.5, anchors=6, seed=0)
    x1, x2, labels = views.next_pair(4, seeded(0))
    assert x1.shape == x2.shape == (4, 3, 16, 16) and not torch.equal(x1, x2) and labels.max() < 3


def test_cell_key_of_a_pretrained_generator_is_stable():
    key = generators.cell_key("biggan-deep-128", 1, 0)
    assert key["gen_identity"]["defaults"]["truncation"] == 1.0
    assert json.dumps(key) == json.dumps(generators.cell_key("biggan-deep-128", 1, 0))


# ---------------------------------------------------------------- image folders
def write_images(folder, n, size=(20, 12), mode="RGB"):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(folder)) + n)
    for i in range(n):
        array = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(array).convert(mode).save(folder / f"img{i}.png")


def test_imagefolder_without_split_is_split_stratified_and_cached(tmp_path, isolated_results):
    for wnid, n in zip(WNIDS, (10, 5, 6)):
        write_images(tmp_path / "flat" / wnid, n, mode="L" if n == 5 else "RGB")
    (tmp_path / "flat" / WNIDS[0] / "notes.txt").write_text("not an image")
    splits = data.load("imagefolder", data_root=str(tmp_path / "flat"), image_size=8)
    assert splits.classes == tuple(sorted(WNIDS)) == data.class_names("imagefolder", str(tmp_path / "flat"))
    assert splits.image_shape == (3, 8, 8) and splits.train.images.dtype == torch.uint8
    assert len(splits.train) == imagefolder.train_size(str(tmp_path / "flat")) == 21 - 4
    assert len(splits.test) == 4 and set(splits.test.labels.tolist()) <= {0, 1, 2}
    assert len(list((isolated_results / "cache" / "imagefolder").iterdir())) == 1
    again = data.load("imagefolder", data_root=str(tmp_path / "flat"), image_size=8)
    assert torch.equal(again.train.images, splits.train.images)


def test_imagefolder_with_train_and_val_folders(tmp_path, monkeypatch):
    for wnid in WNIDS:
        write_images(tmp_path / "in3" / "train" / wnid, 4)
        write_images(tmp_path / "in3" / "val" / wnid, 2)
    monkeypatch.setenv(imagefolder.ENV_ROOT, str(tmp_path / "in3"))
    splits = data.load("imagefolder", image_size=12)
    assert (len(splits.train), len(splits.test), splits.image_shape) == (12, 6, (3, 12, 12))


def test_imagefolder_errors_name_what_to_set(tmp_path):
    with pytest.raises(data.DataNotFoundError, match="data_root=<folder> or set \\$SYNTHSTUDY_IMAGEFOLDER"):
        data.load("imagefolder")
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(data.DataNotFoundError, match="hold no images"):
        data.load("imagefolder", data_root=str(tmp_path))
    with pytest.raises(ValueError, match="image_size"):
        data.load("imagefolder", data_root=str(tmp_path), image_size=4)


# ---------------------------------------------------------------- notebook parameters (config.py)
def multiview_values(**overrides):
    values = {k: v for k, v in config.load_profile("smoke").items() if k in config.MultiviewParams.model_fields}
    return {**values, "profile": "smoke", **overrides}


def test_config_accepts_a_pretrained_generator_with_local_weights(biggan_dir, tmp_path):
    for wnid in WNIDS:
        write_images(tmp_path / "in3" / wnid, 40)
    p = config.validate(config.MultiviewParams, multiview_values(
        generator="biggan-deep-128", dataset="imagefolder", data_root=str(tmp_path / "in3"), val_size=10,
        pretrained_path=str(biggan_dir)))
    assert p.gen_steps["biggan-deep-128"] == 1                      # filled in: nothing to train
    assert config.pool_size(p) == 120 - 24 - 10


@pytest.mark.parametrize("overrides,expected", [
    ({"dataset": "cifar10"}, "allow_download=true.*pretrained_path"),
    ({"dataset": "cifar10", "allow_download": True}, "offline"),
    ({"dataset": "digits", "allow_download": True}, "no counterpart"),
    ({"dataset": "imagefolder", "allow_download": True}, "SYNTHSTUDY_IMAGEFOLDER"),
    ({"generator": "biggan-deep-99"}, "biggan-deep-128"),
])
def test_config_refuses_a_pretrained_generator_that_cannot_run(overrides, expected):
    values = multiview_values(**{"generator": "biggan-deep-128", **overrides})
    with pytest.raises(config.ParameterError, match=expected):
        config.validate(config.MultiviewParams, values)


def test_the_documented_offline_command_fails_fast(capsys, tmp_path, monkeypatch):
    """README: `-p generator biggan-deep-128 -p dataset imagefolder -p allow_download true` stops before any
    notebook runs: with no image folder it names the data root; with one, it says the machine is offline."""
    from synthstudy import reproduce
    argv = ["--profile", "smoke", "--notebooks", "multiview", "-p", "generator", "biggan-deep-128",
            "-p", "dataset", "imagefolder", "-p", "allow_download", "true", "-p", "val_size", "10"]
    monkeypatch.setattr(reproduce, "execute", lambda *a, **k: pytest.fail("no notebook may run"))
    assert reproduce.main(argv) == 2
    assert "SYNTHSTUDY_IMAGEFOLDER" in capsys.readouterr().err
    for wnid in WNIDS:
        write_images(tmp_path / "in3" / wnid, 40)
    monkeypatch.setenv(imagefolder.ENV_ROOT, str(tmp_path / "in3"))
    assert reproduce.main(argv) == 2
    assert "offline" in capsys.readouterr().err
