"""Notebooks 02–04's parameters: one training entry point (``anomaly_models.stage.run``), three
parameter sets that differ in their defaults (``autoencoders``, ``diffusion``, ``fixed_point_gan``
blocks). See :mod:`adunet_lib.parameters`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from adunet_lib.parameters import NotebookParams, override, param


@dataclasses.dataclass(frozen=True)
class TrainingParams(NotebookParams):
    """Reconstruction models trained on one budget: which models, on what, for how long.

    A notebook's own class sets its defaults and ``RECONSTRUCTIONS_FIGURE``, the figure of its models'
    reconstructions (``""``: none — notebook 04 draws Fig. 3 of every model instead).
    """

    RECONSTRUCTIONS_FIGURE: ClassVar[str] = ""

    channels: str = param("all", '"per_sequence" (paper) or "all" (one 3-channel model)',
                          check=lambda v: v in ("all", "per_sequence"), need="must be 'all' or 'per_sequence'")
    modes: list = param(["cropped", "full"], "gland-cropped and/or full slices",
                        check=lambda v: bool(v) and set(v) <= {"cropped", "full"},
                        need="must list 'cropped' and/or 'full'")
    iterations: int = param(80, "training steps per model", check=lambda v: v >= 1, need="must be at least 1")
    batch_size: int = param(16, "slices per step", check=lambda v: v >= 1, need="must be at least 1")
    checkpoint_every: int = param(50, "steps between resume points", check=lambda v: v >= 1,
                                  need="must be at least 1")
    models: dict = param({}, "registered model → its hyperparameters ({} → the model's Config)")


@dataclasses.dataclass(frozen=True)
class AutoencodersParams(TrainingParams):
    """Notebook 02: the dense and spatial autoencoders (Baur et al. 2021)."""

    NOTEBOOK: ClassVar[str] = "02_autoencoders"
    RECONSTRUCTIONS_FIGURE: ClassVar[str] = "reconstructions_autoencoders.png"

    channels: str = override(TrainingParams, "channels", "all",
                             '"per_sequence": one model per T2W/ADC/hbv (paper); "all": one 3-channel model')
    modes: list = override(TrainingParams, "modes", ["cropped", "full"],
                           "gland-cropped slices (final setup) and/or full slices (Table I, block 1)")
    models: dict = override(TrainingParams, "models", {"dense_ae": {}, "spatial_ae": {}},
                            "registered model → its hyperparameters ({} → AEConfig: SGD, lr 0.1, StepLR 30 epochs)")


@dataclasses.dataclass(frozen=True)
class DiffusionParams(TrainingParams):
    """Notebook 03: the DDPM with classifier guidance (Wolleb et al. 2022)."""

    NOTEBOOK: ClassVar[str] = "03_diffusion"
    RECONSTRUCTIONS_FIGURE: ClassVar[str] = "reconstructions_ddpm.png"

    modes: list = override(TrainingParams, "modes", ["cropped"])
    iterations: int = override(TrainingParams, "iterations", 120, "DDPM training steps (paper: 400k)")
    batch_size: int = param(16, "balanced slices per step: the DDPM learns from the healthy half (paper: 10)",
                            check=lambda v: v >= 2, need="must be at least 2 (half healthy, half not)")
    checkpoint_every: int = override(TrainingParams, "checkpoint_every", 40)
    models: dict = override(TrainingParams, "models", {"ddpm": {
        "channels": [16, 32, 64, 64], "attention_resolutions": [], "num_res_blocks": 1, "num_head_channels": 32,
        "norm_num_groups": 16, "classifier_channels": [16, 32, 64, 64], "classifier_attention_resolutions": [],
        "classifier_num_res_blocks": 1, "lr": 0.001, "classifier_lr": 0.001, "classifier_max_t": 500,
        "noise_level": 250, "ddim_steps": 10}},
        "registered model → hyperparameters (DDPMConfig: channels, noise_level L, guidance_scale s, ddim_steps, …)")


@dataclasses.dataclass(frozen=True)
class FixedPointGANParams(TrainingParams):
    """Notebook 04: the Fixed-Point GAN (Siddiquee et al. 2019), then Table I and Fig. 3 of every model."""

    NOTEBOOK: ClassVar[str] = "04_fixed_point_gan"

    iterations: int = override(TrainingParams, "iterations", 250, "paper: 200k, learning-rate decay from the midpoint")
    batch_size: int = override(TrainingParams, "batch_size", 8, "paper: 16")
    checkpoint_every: int = override(TrainingParams, "checkpoint_every", 100)
    models: dict = override(TrainingParams, "models", {"fpgan": {
        "conv_dim": 16, "n_res_blocks": 2, "d_layers": 4, "g_lr": 0.001, "d_lr": 0.001, "n_critic": 2,
        "decay_from": 0.8}},
        "registered model → hyperparameters (FPGANConfig: conv_dim 64, n_res_blocks 6, d_layers 6, n_critic 5, …)")
    figure_slices: int = param(3, "validation slices in Fig. 3", check=lambda v: v >= 0, need="must be ≥ 0")
