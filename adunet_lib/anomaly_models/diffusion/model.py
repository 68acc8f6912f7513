"""The diffusion model with classifier guidance (Wolleb et al. 2022) as a registered reconstruction model."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adunet_lib.anomaly_models.base import ReconstructionModel, SliceBatch, SpeedOptions
from adunet_lib.anomaly_models.diffusion.sampling import (
    HEALTHY,
    NetworkFn,
    alphas_cumprod,
    beta_schedule,
    ddim_decode,
    ddim_encode,
    ddim_timesteps,
    q_sample,
)
from adunet_lib.anomaly_models.diffusion.torch_model import noise_predictor, noisy_classifier
from adunet_lib.anomaly_models.registry import register


@dataclasses.dataclass
class DDPMConfig(SpeedOptions):
    """Diffusion-model hyperparameters; defaults follow Wolleb et al. (2022) at 128².

    Networks: guided-diffusion's U-Net for 128² images — 128 channels in the first layer, widths
    ×(1, 1, 2, 3, 4), two residual blocks per level, self-attention at the 16×16 level — and a
    classifier of the same widths (its encoder half; Wolleb: attention at 32, 16 and 8). Diffusion:
    T = 1000 steps, linear β from 1e-4 to 0.02, ε objective, Adam 1e-4 for both networks.

    Training: each step gets a balanced batch; the DDPM learns from its healthy half only, the
    classifier from the whole batch (noised at a random t) while ``step < classifier_iterations`` —
    the paper trained the DDPM for 400k and the classifier for 150k iterations. ``0`` trains the
    classifier at every step. With ``class_conditional`` (Wolleb et al.'s ``--class_cond True``) the
    DDPM learns from the whole batch instead, each slice's label embedded with its timestep, and
    encodes and decodes with the healthy label.

    Translation: DDIM-encode to ``noise_level`` L, then classifier-guided DDIM back with scale s =
    ``guidance_scale``, visiting ``ddim_steps`` of the L levels (Wolleb: L = 500, s = 100, all 500
    steps; 50 keeps the result close at a tenth of the cost). These three are read at reconstruction
    time, so they can be changed on a trained model (``model.config.guidance_scale = 0``).

    Attributes:
        channels: U-Net width per resolution level (image side divisible by 2 ** (levels - 1)).
        attention_resolutions: feature-map sides with self-attention in the U-Net.
        num_res_blocks: residual blocks per level.
        num_head_channels: channels per attention head (both networks).
        norm_num_groups: GroupNorm groups; every width must be divisible by it.
        timesteps: diffusion steps T.
        schedule: a MONAI noise schedule (``linear_beta``, ``scaled_linear_beta``, ``sigmoid_beta``,
            ``cosine``).
        beta_start, beta_end: the β range.
        lr: DDPM Adam learning rate.
        classifier_channels, classifier_attention_resolutions, classifier_num_res_blocks: the
            classifier's architecture.
        classifier_design: ``adunet`` (MONAI's ``DiffusionModelEncoder``: every level halves the map,
            the last one flattened into a two-layer perceptron) or ``wolleb`` (the classifier of Wolleb
            et al.'s code, :class:`~adunet_lib.anomaly_models.diffusion.torch_model.WollebClassifier`:
            a middle block with attention and attention pooling, so evidence counts wherever it sits).
            At equal budget Wolleb's code removed more of the lesion than adunet's DDPM with the ``adunet``
            design; pairing each code's noise predictor with either classifier puts most of the difference
            in the classifier (figures/bench/parity_ddpm_swap.md), and with ``wolleb`` adunet's removes
            as much (figures/bench/parity_ddpm_classifier.md). paper.yaml: ``wolleb``; the default stays
            ``adunet``, which the committed demo was made with.
        classifier_lr: classifier Adam learning rate.
        classifier_iterations: steps during which the classifier trains (0 = all).
        classifier_max_t: the classifier sees t uniform in ``[0, classifier_max_t)``; 0 = all T (the
            paper). Guidance only queries t < L, so ``noise_level`` spends a small budget better.
        noise_level: L, how far the slice is encoded.
        guidance_scale: s; 0 gives plain DDIM encode/decode (no classifier calls).
        ddim_steps: timesteps visited between 0 and L, each way.
        clip_denoised: clip each intermediate x̂_0 to the intensity range while decoding.
        class_conditional: the DDPM as Wolleb et al. train it — on every slice, conditioned on its
            label, sampled with the healthy one; False (adunet's): unconditional, on healthy slices
            only, so it never learns what a lesion looks like. Which makes better maps awaits a
            measurement on the bench.
        channels_last, mixed_precision, fused_optimizer: speed switches
            (:class:`~adunet_lib.anomaly_models.base.SpeedOptions`); with ``mixed_precision`` the
            networks run in bf16, the DDIM updates stay in float64.
    """

    channels: tuple[int, ...] = (128, 128, 256, 384, 512)
    attention_resolutions: tuple[int, ...] = (16,)
    num_res_blocks: int = 2
    num_head_channels: int = 64
    norm_num_groups: int = 32
    timesteps: int = 1000
    schedule: str = "linear_beta"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    lr: float = 1e-4
    classifier_channels: tuple[int, ...] = (128, 128, 256, 384, 512)
    classifier_attention_resolutions: tuple[int, ...] = (32, 16, 8)
    classifier_num_res_blocks: int = 2
    classifier_design: str = "adunet"
    classifier_lr: float = 1e-4
    classifier_iterations: int = 150_000
    classifier_max_t: int = 0
    noise_level: int = 500
    guidance_scale: float = 100.0
    ddim_steps: int = 50
    clip_denoised: bool = True
    class_conditional: bool = False


@register("ddpm", "Diffusion Model")
class GuidedDiffusion(ReconstructionModel):
    """DDPM + noise-aware classifier; pseudo-healthy slices by classifier-guided DDIM (Wolleb et al. 2022).

    Example:
        >>> from adunet_lib.anomaly_models import create
        >>> model = create("ddpm", in_channels=1, image_size=32, config=GuidedDiffusion.smoke_config())
        >>> model.reconstruct(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    uses_labels = True
    flip_augmentation = False  # Wolleb et al. train the DDPM without data augmentation
    Config = DDPMConfig

    def __init__(self, in_channels: int, image_size: int, config: Any = None, device: str | torch.device = "cpu"):
        super().__init__(in_channels, image_size, config, device)
        c = self.config
        if not 1 <= c.noise_level <= c.timesteps:
            raise ValueError(f"noise_level must be in 1..timesteps ({c.timesteps}), not {c.noise_level}")
        if not 0 <= c.classifier_max_t <= c.timesteps:
            raise ValueError(f"classifier_max_t must be in 0..timesteps ({c.timesteps}), not {c.classifier_max_t}")
        ddim_timesteps(c.noise_level, c.ddim_steps)  # fail at construction, not after hours of training
        self.alpha_bar = alphas_cumprod(beta_schedule(c.timesteps, c.schedule, c.beta_start, c.beta_end))
        self.unet = noise_predictor(in_channels, image_size, tuple(c.channels), tuple(c.attention_resolutions),
                                    c.num_res_blocks, c.num_head_channels, c.norm_num_groups,
                                    num_classes=2 if c.class_conditional else None)
        self.classifier = noisy_classifier(in_channels, image_size, tuple(c.classifier_channels),
                                           tuple(c.classifier_attention_resolutions), c.classifier_num_res_blocks,
                                           c.num_head_channels, c.norm_num_groups, design=c.classifier_design)
        self._prepare(self.unet, self.classifier)
        self._opt: torch.optim.Optimizer | None = None
        self._classifier_opt: torch.optim.Optimizer | None = None

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {"channels": (8, 16), "attention_resolutions": (), "num_res_blocks": 1, "num_head_channels": 8,
                "norm_num_groups": 8, "classifier_channels": (8, 16), "classifier_attention_resolutions": (),
                "classifier_num_res_blocks": 1, "ddim_steps": 2}

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet, "classifier": self.classifier}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"unet": self._opt, "classifier": self._classifier_opt} if self._opt else {}

    def configure(self, total_iterations: int, epoch_length: int) -> None:
        # constant learning rates, as guided-diffusion trains both networks
        options = self._optimizer_options()
        self._opt = torch.optim.Adam(self.unet.parameters(), lr=self.config.lr, **options)
        self._classifier_opt = torch.optim.Adam(self.classifier.parameters(), lr=self.config.classifier_lr, **options)

    def _run(self, net: nn.Module, label: int | torch.Tensor | None = None) -> NetworkFn:
        """``net`` as ``fn(x_t, t)`` with the speed options applied; returns fp32. ``label``: the class
        a class-conditional DDPM is given (one for every slice, or one per slice)."""

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with self._autocast():
                if label is None:
                    return net(self._input(x), t).float()
                labels = torch.full((x.shape[0],), label, device=x.device) if isinstance(label, int) else label
                return net(self._input(x), t, class_labels=labels.to(x.device, torch.long)).float()

        return fn

    def _ddpm(self, label: int | torch.Tensor = HEALTHY) -> NetworkFn:
        """The DDPM as ``fn(x_t, t)``; a class-conditional one is told ``label``."""
        return self._run(self.unet, label if self.config.class_conditional else None)

    def _noised(self, x0: torch.Tensor, max_t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, t, ε) for random t < max_t; drawn on the CPU so that the checkpointed CPU RNG state alone
        makes a resumed run draw the same numbers, whatever the device."""
        t = torch.randint(0, max_t, (x0.shape[0],))
        noise = torch.randn(x0.shape)
        t, noise = t.to(x0.device), noise.to(x0.device, x0.dtype)
        return q_sample(x0, t, noise, self.alpha_bar), t, noise

    def train_step(self, batch: SliceBatch) -> dict[str, float]:
        c = self.config
        x0 = self._input(batch.images) * 2 - 1
        losses: dict[str, float] = {}
        # unconditional, the DDPM must learn the healthy distribution only: lesion slices are for the
        # classifier; class-conditional, it learns both and is told which one each slice shows
        learn = torch.ones_like(batch.labels, dtype=torch.bool) if c.class_conditional else batch.labels == HEALTHY
        if learn.any():
            x_t, t, noise = self._noised(x0[learn], c.timesteps)
            loss = F.mse_loss(self._ddpm(batch.labels[learn])(x_t, t), noise)
            self._opt.zero_grad(set_to_none=True)
            loss.backward()
            self._opt.step()
            losses["ddpm"] = float(loss.detach())
        if c.classifier_iterations <= 0 or self.step < c.classifier_iterations:
            x_t, t, _ = self._noised(x0, c.classifier_max_t or c.timesteps)
            logits = self._run(self.classifier)(x_t, t)
            loss = F.cross_entropy(logits, batch.labels)
            self._classifier_opt.zero_grad(set_to_none=True)
            loss.backward()
            self._classifier_opt.step()
            losses["classifier"] = float(loss.detach())
            losses["classifier_acc"] = float((logits.argmax(1) == batch.labels).float().mean())
        return losses

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.translate(x)

    def translate(self, x: torch.Tensor, ddpm: NetworkFn | None = None,
                  classifier: NetworkFn | None = None) -> torch.Tensor:
        """Pseudo-healthy ``x`` (in [0, 1]) by this model's guided DDIM, with its own networks or the noise
        predictor and classifier given as ``fn(x_t, t)`` (``bench_parity.py --swap`` pairs another code's)."""
        c = self.config
        steps = ddim_timesteps(c.noise_level, c.ddim_steps)
        with torch.no_grad():
            unet = ddpm or self._ddpm(HEALTHY)  # Wolleb et al. encode and decode with the healthy label
            latent = ddim_encode(unet, x * 2 - 1, self.alpha_bar, steps)
            # decoding re-enables gradients for the classifier only
            healthy = ddim_decode(unet, latent, self.alpha_bar, steps, classifier or self._run(self.classifier),
                                  c.guidance_scale, HEALTHY, c.clip_denoised)
        return (healthy + 1) / 2
