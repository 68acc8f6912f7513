"""The autoencoder networks (plain ``nn.Module`` s, no training logic).

Baur et al. (2021): a 5×5 stride-2 convolutional encoder (32 → 64 → 128 → 128 filters, BatchNorm,
LeakyReLU) down to an 8×8 map at 128² input; the *dense* AE squeezes it into a vector (dropout),
the *spatial* AE keeps a spatial bottleneck; a mirrored transposed-convolution decoder.

Two bottleneck designs (``design``): ``adunet`` (this repository's first reading of the paper) and
``baur`` (Baur et al.'s published code): there the dense AE first narrows the 128 maps to 16 with a
1×1 convolution, maps the flattened 16×8×8 to the latent vector and back with dropout after each
dense layer, and widens again with a 1×1 convolution; the spatial AE keeps the encoder's own 128
maps, with dropout only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.2))


#: Bottleneck designs of :class:`ConvAutoencoder`.
DESIGNS = ("adunet", "baur")
#: Baur et al.'s dense bottleneck narrows the encoder's maps by this factor (128 → 16) before flattening.
BAUR_REDUCTION = 8


def _baur_bottleneck(kind: str, c: int, side: int, latent_dim: int, dropout: float) -> nn.Sequential:
    """Baur et al.'s bottlenecks (see the module docstring); linear throughout, as in their code."""
    if kind == "spatial":
        return nn.Sequential(nn.Dropout(dropout))
    narrow = max(1, c // BAUR_REDUCTION)
    return nn.Sequential(
        nn.Conv2d(c, narrow, 1), nn.Flatten(), nn.Linear(narrow * side * side, latent_dim), nn.Dropout(dropout),
        nn.Linear(latent_dim, narrow * side * side), nn.Dropout(dropout), nn.Unflatten(1, (narrow, side, side)),
        nn.Conv2d(narrow, c, 1))


class ConvAutoencoder(nn.Module):
    """Encoder → bottleneck → decoder; output in [0, 1] (sigmoid).

    Args:
        in_channels: sequences seen at once (1, or 3 for all of T2W/ADC/hbv).
        image_size: input height = width; must be divisible by 2 ** len(filters).
        filters: encoder widths (decoder mirrors them).
        bottleneck: ``dense`` (a vector of ``latent_dim``) or ``spatial`` (``latent_channels`` maps).
        latent_dim, latent_channels, dropout: bottleneck size and dropout (``baur``'s spatial
            bottleneck keeps the encoder's maps: ``latent_channels`` is not used).
        design: ``adunet`` or ``baur`` (see the module docstring).
    """

    def __init__(self, in_channels: int, image_size: int, filters: Sequence[int] = (32, 64, 128, 128),
                 bottleneck: str = "dense", latent_dim: int = 128, latent_channels: int = 16, dropout: float = 0.2,
                 design: str = "adunet"):
        super().__init__()
        if image_size % (2 ** len(filters)):
            raise ValueError(f"image_size {image_size} must be divisible by {2 ** len(filters)}")
        widths = [in_channels, *filters]
        self.encoder = nn.Sequential(*[_down(a, b) for a, b in zip(widths[:-1], widths[1:])])
        side = image_size // 2 ** len(filters)
        c = filters[-1]
        if bottleneck not in ("dense", "spatial"):
            raise ValueError(f"bottleneck must be 'dense' or 'spatial', not {bottleneck!r}")
        if design not in DESIGNS:
            raise ValueError(f"bottleneck_design must be one of {', '.join(DESIGNS)}, not {design!r}")
        if design == "baur":
            self.bottleneck = _baur_bottleneck(bottleneck, c, side, latent_dim, dropout)
        elif bottleneck == "dense":
            self.bottleneck = nn.Sequential(
                nn.Flatten(), nn.Dropout(dropout), nn.Linear(c * side * side, latent_dim),
                nn.Linear(latent_dim, c * side * side), nn.Unflatten(1, (c, side, side)), nn.LeakyReLU(0.2))
        elif bottleneck == "spatial":
            self.bottleneck = nn.Sequential(
                nn.Conv2d(c, latent_channels, 1), nn.Dropout2d(dropout), nn.Conv2d(latent_channels, c, 1),
                nn.LeakyReLU(0.2))
        rev = list(reversed(filters))
        self.decoder = nn.Sequential(*[_up(a, b) for a, b in zip(rev, [*rev[1:], rev[-1]])])
        self.head = nn.Conv2d(rev[-1], in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.decoder(self.bottleneck(self.encoder(x)))))
