"""The diffusion model's networks (plain ``nn.Module`` s from MONAI, no training logic).

Wolleb et al. (2022) build on OpenAI's guided-diffusion: a U-Net that predicts the noise ε of a noised
slice x_t, and a noise-aware classifier — the encoder half of the same U-Net — that predicts healthy vs
lesion from x_t and t. Both take the timestep as their second argument: ``net(x_t, t)``.

Attention is placed by *feature-map side* (guided-diffusion's ``attention_resolutions``), not by level
index, so one setting means the same at 32², 64² and 128².
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import DiffusionModelEncoder


def _levels(image_size: int, n_levels: int) -> list[int]:
    """Feature-map side of each level: both MONAI networks work at full size first, then halve."""
    return [image_size // 2 ** i for i in range(n_levels)]


def _head_channels(channels: Sequence[int], num_head_channels: int) -> tuple[int, ...]:
    # a level narrower than one head gets a single head instead of MONAI's zero-head error
    return tuple(min(num_head_channels, c) for c in channels)


def _check_widths(channels: Sequence[int], norm_num_groups: int, what: str) -> None:
    if not channels:
        raise ValueError(f"{what}: channels must name at least one level")
    bad = [c for c in channels if c % norm_num_groups]
    if bad:
        raise ValueError(f"{what}: channels {tuple(channels)} must all be divisible by norm_num_groups="
                         f"{norm_num_groups} (GroupNorm); offending: {bad}")


def noise_predictor(in_channels: int, image_size: int, channels: Sequence[int] = (128, 128, 256, 384, 512),
                    attention_resolutions: Sequence[int] = (16,), num_res_blocks: int = 2,
                    num_head_channels: int = 64, norm_num_groups: int = 32,
                    num_classes: int | None = None) -> DiffusionModelUNet:
    """The ε-predicting U-Net, ``eps = net(x_t, t)`` with ``x_t`` of shape ``(B, in_channels, S, S)``;
    with ``num_classes``, class-conditional: ``eps = net(x_t, t, class_labels=y)``.

    Args:
        in_channels: sequences seen at once (input and output channels).
        image_size: slice side S; must be divisible by ``2 ** (len(channels) - 1)``.
        channels: width per resolution level (the defaults are guided-diffusion's for 128²).
        attention_resolutions: feature-map sides with self-attention (the bottleneck always has it).
        num_res_blocks: residual blocks per level.
        num_head_channels: channels per attention head.
        norm_num_groups: GroupNorm groups; every width must be divisible by it.
        num_classes: classes whose learned embedding is added to the timestep's (guided-diffusion's
            ``--class_cond True``); None: unconditional.

    Example:
        >>> net = noise_predictor(1, 32, channels=(8, 16), attention_resolutions=(), num_res_blocks=1,
        ...                       num_head_channels=8, norm_num_groups=8)
    """
    _check_widths(channels, norm_num_groups, "noise_predictor")
    factor = 2 ** (len(channels) - 1)
    if image_size % factor:
        raise ValueError(f"noise_predictor: image_size {image_size} must be divisible by {factor} "
                         f"for {len(channels)} levels")
    sides = _levels(image_size, len(channels))
    return DiffusionModelUNet(
        spatial_dims=2, in_channels=in_channels, out_channels=in_channels, num_res_blocks=num_res_blocks,
        channels=tuple(channels), attention_levels=tuple(s in set(attention_resolutions) for s in sides),
        norm_num_groups=norm_num_groups, num_head_channels=_head_channels(channels, num_head_channels),
        num_class_embeds=num_classes)


def noisy_classifier(in_channels: int, image_size: int, channels: Sequence[int] = (128, 128, 256, 384, 512),
                     attention_resolutions: Sequence[int] = (32, 16, 8), num_res_blocks: int = 2,
                     num_head_channels: int = 64, norm_num_groups: int = 32,
                     num_classes: int = 2) -> DiffusionModelEncoder:
    """The noise-aware classifier, ``logits = net(x_t, t)`` of shape ``(B, num_classes)``.

    Args:
        in_channels: sequences seen at once.
        image_size: slice side S (any size; the head is sized for it).
        channels: width per level (the encoder halves the map after every level).
        attention_resolutions: feature-map sides with self-attention (Wolleb: 32, 16 and 8).
        num_res_blocks: residual blocks per level.
        num_head_channels: channels per attention head.
        norm_num_groups: GroupNorm groups; every width must be divisible by it.
        num_classes: logits returned (0 = healthy, 1 = lesion).

    Example:
        >>> net = noisy_classifier(1, 32, channels=(8, 16), attention_resolutions=(), num_res_blocks=1,
        ...                        num_head_channels=8, norm_num_groups=8)
    """
    _check_widths(channels, norm_num_groups, "noisy_classifier")
    sides = _levels(image_size, len(channels))
    return DiffusionModelEncoder(
        spatial_dims=2, in_channels=in_channels, out_channels=num_classes, input_shape=(image_size, image_size),
        num_res_blocks=num_res_blocks, channels=tuple(channels),
        attention_levels=tuple(s in set(attention_resolutions) for s in sides), norm_num_groups=norm_num_groups,
        num_head_channels=_head_channels(channels, num_head_channels))
