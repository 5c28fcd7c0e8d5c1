"""ResNet-18, MobileNetV2 and MobileNetV3-Small with torchvision's exact module and parameter
names, so a torchvision ``state_dict`` saved as safetensors loads key for key
(``edgeslim ... resnet18 --weights resnet18.safetensors``). torchvision itself cannot be
installed beside the CPU torch here (its wheels link CUDA libraries).

``small_input=True`` adapts the stem for 32x32 images (Fashion-MNIST padded, digits, CIFAR):
ResNet's 7x7/2 conv + max-pool become a 3x3/1 conv, the MobileNets' first conv runs at
stride 1, so the feature maps are not 1x1 before the last stage. The parameter names stay
torchvision's (only ResNet's ``conv1`` changes shape). ``width`` scales every channel count
(torchvision's ``width_mult``; tests use small widths), ``in_channels`` the input channels.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


def _make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's (from the TF MobileNet code): nearest multiple of ``divisor``, at most 10% down."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class Conv2dNormActivation(nn.Sequential):
    """conv (no bias) + batch norm + activation, named 0, 1, 2 as in torchvision."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
                 activation_layer: Callable[[], nn.Module] | None = nn.ReLU6):
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
                  norm_layer(cout)]
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)


# ---- ResNet -------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3,
                 small_input: bool = False, width: float = 1.0):
        super().__init__()
        planes = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, planes[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, 2, 1)
        inplanes = planes[0]
        for i, (p, n) in enumerate(zip(planes, layers)):
            blocks = [BasicBlock(inplanes if j == 0 else p, p, (1 if i == 0 else 2) if j == 0 else 1) for j in range(n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = p
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---- MobileNetV2 --------------------------------------------------------------------------

class InvertedResidualV2(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = [Conv2dNormActivation(inp, hidden, 1)] if expand_ratio != 1 else []
        layers += [Conv2dNormActivation(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1))  # expand ratio t, channels c, repeats n, first stride s


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        cin = _make_divisible(32 * width)
        self.last_channel = _make_divisible(1280 * max(1.0, width))
        features: list[nn.Module] = [Conv2dNormActivation(in_channels, cin, 3, 1 if small_input else 2)]
        for t, c, n, s in V2_SETTING:
            cout = _make_divisible(c * width)
            for i in range(n):
                features.append(InvertedResidualV2(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(Conv2dNormActivation(cin, self.last_channel, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# ---- MobileNetV3 --------------------------------------------------------------------------

class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation with MobileNetV3's hard-sigmoid gate."""

    def __init__(self, input_channels: int, squeeze_channels: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


def _bn_v3(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=0.001, momentum=0.01)


class InvertedResidualV3(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, use_se: bool, use_hs: bool, stride: int):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        act = nn.Hardswish if use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(Conv2dNormActivation(cin, expanded, 1, norm_layer=_bn_v3, activation_layer=act))
        layers.append(Conv2dNormActivation(expanded, expanded, kernel, stride, groups=expanded, norm_layer=_bn_v3,
                                           activation_layer=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4)))
        layers.append(Conv2dNormActivation(expanded, cout, 1, norm_layer=_bn_v3, activation_layer=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


# input, kernel, expanded, output, squeeze-excite, hard-swish, stride (torchvision's mobilenet_v3_small)
V3_SMALL_SETTING = ((16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2),
                    (24, 3, 88, 24, False, False, 1), (24, 5, 96, 40, True, True, 2),
                    (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
                    (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1),
                    (48, 5, 288, 96, True, True, 2), (96, 5, 576, 96, True, True, 1),
                    (96, 5, 576, 96, True, True, 1))


class MobileNetV3(nn.Module):
    def __init__(self, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
                 width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        setting = [(_make_divisible(i * width), k, _make_divisible(e * width), _make_divisible(o * width), se, hs, s)
                   for i, k, e, o, se, hs, s in V3_SMALL_SETTING]
        layers: list[nn.Module] = [Conv2dNormActivation(in_channels, setting[0][0], 3, 1 if small_input else 2,
                                                        norm_layer=_bn_v3, activation_layer=nn.Hardswish)]
        layers += [InvertedResidualV3(*cfg) for cfg in setting]
        last_in = setting[-1][3]
        layers.append(Conv2dNormActivation(last_in, 6 * last_in, 1, norm_layer=_bn_v3, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last_channel = _make_divisible(1024 * width)
        self.classifier = nn.Sequential(nn.Linear(6 * last_in, last_channel), nn.Hardswish(), nn.Dropout(dropout),
                                        nn.Linear(last_channel, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
