"""The default network: a compact 2D CNN that trains the demo cohort in minutes on a laptop CPU."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.blocks import Convolution
from torch import nn


class SimpleCNN(nn.Sequential):
    """Blocks of Conv → BatchNorm → ReLU → MaxPool, then global average pooling and a linear head.

    Args:
        in_channels: input channels (the S slices in ``channels`` mode, 1 in ``slices`` mode).
        num_classes: output logits.
        channels: output channels of each block; each block halves the image size.
        kernel_size: convolution kernel size.
        dropout: dropout before the head (0 disables it).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        kernel_size: int = 3,
        dropout: float = 0.2,
    ) -> None:
        if not channels:
            raise ValueError("SimpleCNN needs at least one block (channels is empty)")
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers.append(
                Convolution(
                    spatial_dims=2,
                    in_channels=previous,
                    out_channels=width,
                    kernel_size=kernel_size,
                    adn_ordering="NA",
                    act="RELU",
                    norm="BATCH",
                    bias=False,  # BatchNorm's shift makes a conv bias redundant
                )
            )
            layers.append(nn.MaxPool2d(2))
            previous = width
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(previous, num_classes),
        ]
        super().__init__(*layers)
