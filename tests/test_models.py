import pytest
import torch

from synthstudy.models import available, create_model


@pytest.mark.parametrize("name", ["cnn", "cnn_wide"])
@pytest.mark.parametrize("channels,size", [(1, 8), (1, 28), (3, 32)])
def test_registry_models_give_logits_and_features(name, channels, size):
    model = create_model(name, in_channels=channels, num_classes=7, image_size=size).eval()
    x = torch.randn(3, channels, size, size)
    assert model(x).shape == (3, 7)
    assert model.features(x).shape == (3, model.feature_dim)


def test_timm_models_build_offline():
    model = create_model("timm:resnet18", in_channels=1, num_classes=10, image_size=28).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.features(torch.randn(2, 1, 28, 28)).shape == (2, model.feature_dim)


@pytest.mark.parametrize("name", ["vgg", "timm:not_a_model"])
def test_unknown_model_names_are_refused_with_the_choices(name):
    with pytest.raises(ValueError, match="model="):
        create_model(name, 1, 10, 28)
    assert "cnn" in available()


def test_seed_fixes_initial_weights_without_touching_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("cnn", 1, 10, 28, seed=5)
    assert torch.equal(torch.rand(1), expected_next)
    b, c = create_model("cnn", 1, 10, 28, seed=5), create_model("cnn", 1, 10, 28, seed=6)
    wa, wb, wc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
