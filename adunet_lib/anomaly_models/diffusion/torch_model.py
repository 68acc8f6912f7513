"""The diffusion model's networks (plain ``nn.Module`` s from MONAI, no training logic).

Wolleb et al. (2022) build on OpenAI's guided-diffusion: a U-Net that predicts the noise ε of a noised
slice x_t, and a noise-aware classifier — the encoder half of the same U-Net — that predicts healthy vs
lesion from x_t and t. Both take the timestep as their second argument: ``net(x_t, t)``.

Attention is placed by *feature-map side* (guided-diffusion's ``attention_resolutions``), not by level
index, so one setting means the same at 32², 64² and 128².
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import (
    DiffusionModelEncoder,
    get_down_block,
    get_mid_block,
    get_timestep_embedding,
)
from torch import nn

#: the classifier designs :func:`noisy_classifier` builds
CLASSIFIER_DESIGNS = ("adunet", "wolleb")


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
                     num_classes: int = 2, design: str = "adunet") -> nn.Module:
    """The noise-aware classifier, ``logits = net(x_t, t)`` of shape ``(B, num_classes)``.

    ``design``: ``adunet`` is MONAI's ``DiffusionModelEncoder`` (every level halves the map, the last
    map flattened into a two-layer perceptron); ``wolleb`` is the encoder Wolleb et al.'s code trains
    (:class:`WollebClassifier`).

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
    if design not in CLASSIFIER_DESIGNS:
        raise ValueError(f"noisy_classifier: design must be one of {CLASSIFIER_DESIGNS}, not {design!r}")
    if design == "wolleb":
        return WollebClassifier(in_channels, image_size, channels, attention_resolutions, num_res_blocks,
                                num_head_channels, norm_num_groups, num_classes)
    sides = _levels(image_size, len(channels))
    return DiffusionModelEncoder(
        spatial_dims=2, in_channels=in_channels, out_channels=num_classes, input_shape=(image_size, image_size),
        num_res_blocks=num_res_blocks, channels=tuple(channels),
        attention_levels=tuple(s in set(attention_resolutions) for s in sides), norm_num_groups=norm_num_groups,
        num_head_channels=_head_channels(channels, num_head_channels))


class AttentionPool(nn.Module):
    """Logits from a feature map by one attention query (the pooling of guided-diffusion's classifier,
    ``--classifier_pool attention``, after CLIP): the map's mean is prepended to its locations as a
    token, a learned embedding is added per token, and the mean token attends over all of them; its
    output is projected to ``out_channels``. Unlike a flattened perceptron, a lesion's evidence counts
    the same wherever in the slice it sits."""

    def __init__(self, side: int, channels: int, num_head_channels: int, out_channels: int):
        super().__init__()
        self.position = nn.Parameter(torch.randn(channels, side * side + 1) / channels ** 0.5)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = nn.Conv1d(channels, out_channels, 1)
        self.heads = max(1, channels // num_head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        tokens = x.reshape(b, c, -1)
        tokens = torch.cat([tokens.mean(dim=-1, keepdim=True), tokens], dim=-1) + self.position.to(x.dtype)
        # (B, 3C, N) → three (B, heads, N, C / heads)
        q, k, v = (part.reshape(b, self.heads, c // self.heads, -1).transpose(2, 3)
                   for part in self.qkv(tokens).chunk(3, dim=1))
        pooled = F.scaled_dot_product_attention(q[:, :, :1], k, v)  # the mean token's query only
        return self.proj(pooled.transpose(2, 3).reshape(b, c, 1))[:, :, 0]


class WollebClassifier(nn.Module):
    """The noise-aware classifier as Wolleb et al.'s code builds it (guided-diffusion's
    ``EncoderUNetModel`` with ``--classifier_pool attention --classifier_resblock_updown True``), made
    of MONAI's blocks: the U-Net's encoder half — every level but the last halves the map, by a residual
    block — then a middle block (residual, self-attention, residual), GroupNorm, SiLU and
    :class:`AttentionPool`. Their residual blocks also scale-and-shift by the timestep
    (``use_scale_shift_norm``); MONAI's add it, as adunet's U-Net does.

    Example:
        >>> net = WollebClassifier(1, 32, (8, 16), (), 1, 8, 8)
        >>> net(torch.zeros(2, 1, 32, 32), torch.zeros(2, dtype=torch.long)).shape
        torch.Size([2, 2])
    """

    def __init__(self, in_channels: int, image_size: int, channels: Sequence[int], attention_resolutions: Sequence[int],
                 num_res_blocks: int, num_head_channels: int, norm_num_groups: int, num_classes: int = 2):
        super().__init__()
        self.first_width = channels[0]
        emb = 4 * channels[0]
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.time_embed = nn.Sequential(nn.Linear(channels[0], emb), nn.SiLU(), nn.Linear(emb, emb))
        heads = _head_channels(channels, num_head_channels)
        self.down_blocks = nn.ModuleList()
        side, width = image_size, channels[0]
        for level, out in enumerate(channels):
            last = level == len(channels) - 1
            self.down_blocks.append(get_down_block(
                spatial_dims=2, in_channels=width, out_channels=out, temb_channels=emb, num_res_blocks=num_res_blocks,
                norm_num_groups=norm_num_groups, norm_eps=1e-6, add_downsample=not last, resblock_updown=True,
                with_attn=side in set(attention_resolutions), with_cross_attn=False, num_head_channels=heads[level],
                transformer_num_layers=1, cross_attention_dim=None))
            width = out
            side = side if last else side // 2
        self.middle = get_mid_block(spatial_dims=2, in_channels=width, temb_channels=emb, norm_num_groups=norm_num_groups,
                                    norm_eps=1e-6, with_conditioning=False, num_head_channels=heads[-1],
                                    transformer_num_layers=1, cross_attention_dim=None)
        self.out = nn.Sequential(nn.GroupNorm(norm_num_groups, width, eps=1e-6), nn.SiLU(),
                                 AttentionPool(side, width, heads[-1], num_classes))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(get_timestep_embedding(timesteps, self.first_width).to(x.dtype))
        h = self.conv_in(x)
        for block in self.down_blocks:
            h, _ = block(hidden_states=h, temb=emb)
        return self.out(self.middle(hidden_states=h, temb=emb))
