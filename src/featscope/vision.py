"""Image models for the kernel eigen-measures study (Nam et al.): a small CNN for the MNIST
family, ResNet-18 and VGG-16 (with or without batch norm) for CIFAR-10.

torchvision is not a dependency (its PyPI wheels do not import beside the CPU
build of torch this project installs), so the two classics are written out
here, in their usual CIFAR form. Each exposes its penultimate features as
hidden layer ``h1`` (post-activation; for ResNet, the pooled features, which
have no separate pre-activation) and its last layer as ``readout``.
"""

from __future__ import annotations

import torch
from torch import nn

from .models import Features


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class _WithFeatures(nn.Module):
    """Shared forward: body -> flattened features -> optional hidden FC -> readout."""

    def forward_features(self, x):
        z = self.body(x).flatten(1)
        if len(self.hidden):
            pre = self.hidden[0](z)
            post = self.act(pre)
        else:  # the pooled body's output is the one layer: hooks on `act` (an identity) see it
            pre = post = self.act(z)
        return self.readout(post), Features(z, {"h1": pre}, {"h1": post})

    def forward(self, x):
        return self.forward_features(x)[0]


class SmallCNN(_WithFeatures):
    """Two conv blocks and a hidden FC layer: the MNIST-family CNN."""

    def __init__(self, in_channels: int, classes: int, width: int = 128, batch_norm: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            _norm(32, batch_norm),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            _norm(64, batch_norm),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.hidden = nn.ModuleList([nn.Linear(64 * 16, width)])
        self.act = nn.ReLU()
        self.readout = nn.Linear(width, classes)


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(_WithFeatures):
    def __init__(self, in_channels: int, classes: int, width: int = 512, batch_norm: bool = True):
        super().__init__()
        layers, c = [], in_channels
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), _norm(v, batch_norm), nn.ReLU()]
                c = v
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.hidden = nn.ModuleList([nn.Linear(512, width)])
        self.act = nn.ReLU()
        self.readout = nn.Linear(width, classes)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, batch_norm: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=not batch_norm)
        self.bn1 = _norm(cout, batch_norm)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=not batch_norm)
        self.bn2 = _norm(cout, batch_norm)
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=not batch_norm), _norm(cout, batch_norm))
        )

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.skip(x))


class ResNet18(_WithFeatures):
    def __init__(self, in_channels: int, classes: int, batch_norm: bool = True):
        super().__init__()
        layers = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=not batch_norm), _norm(64, batch_norm), nn.ReLU()]
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_Block(cin, cout, stride, batch_norm), _Block(cout, cout, 1, batch_norm)]
            cin = cout
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.hidden = nn.ModuleList()
        self.act = nn.Identity()
        self.readout = nn.Linear(512, classes)
