import pytest
import torch

from edgeslim.errors import ConfigError
from edgeslim.models import create, list_models, register_model


def test_builtin_models_listed():
    assert {"seed-cnn", "lenet-300-100", "lenet-5", "efficientnet-lite0"} <= set(list_models())


@pytest.mark.parametrize("name,shape,params", [
    ("seed-cnn", (1, 32, 32), 16 * 9 + 16 + 32 * 16 * 9 + 32 + 2048 * 128 + 128 + 1290),
    ("lenet-300-100", (1, 28, 28), 784 * 300 + 300 + 300 * 100 + 100 + 1010),
    ("lenet-5", (1, 32, 32), 156 + 2416 + 48120 + 10164 + 850),
])
def test_shapes_and_parameter_counts(name, shape, params):
    model = create(name)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.edgeslim_arch == {"name": name, "kwargs": {}}


def test_width_multiplier_shrinks_seed_cnn():
    small = create("seed-cnn", width=0.25)
    assert small.features[0].out_channels == 4 and small(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_unknown_model_lists_available():
    with pytest.raises(ConfigError, match="unknown model 'resnet9000'.*seed-cnn"):
        create("resnet9000")


def test_register_user_model():
    @register_model("test-tiny", "a test model")
    def tiny(num_classes: int = 3):
        return torch.nn.Linear(4, num_classes)

    assert "test-tiny" in list_models() and create("test-tiny", num_classes=5).out_features == 5


@pytest.mark.slow
def test_efficientnet_lite0_pretrained_loads_offline():
    model = create("efficientnet-lite0").eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
    assert isinstance(model._swish, torch.nn.ReLU6)  # Lite variants use ReLU6, not swish
