"""The Fixed-Point GAN (Siddiquee et al. 2019) as a registered reconstruction model.

The generator learns to move a slice between two domains, healthy (0) and lesion (1), while a slice
sent to its *own* domain must come back unchanged (the "fixed point"). Sending every slice to the
healthy domain then removes lesions and leaves healthy tissue alone, so ``|x - G(x, healthy)|`` is
an anomaly map.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from adunet_lib.anomaly_models.base import ReconstructionModel, SliceBatch, SpeedOptions
from adunet_lib.anomaly_models.fpgan.torch_model import Discriminator, Generator
from adunet_lib.anomaly_models.registry import register

#: domain index of healthy slices (= the slice label 0)
HEALTHY = 0

_G_KEYS = ("g_adv", "g_cls", "g_rec", "g_id")


@dataclasses.dataclass
class FPGANConfig(SpeedOptions):
    """Fixed-Point GAN hyperparameters; defaults are the paper's (StarGAN's networks and optimiser).

    Attributes:
        conv_dim: first-layer width of generator and discriminator.
        n_res_blocks: generator residual blocks.
        d_layers: discriminator stride-2 convolutions; ``image_size // 2 ** d_layers`` must be >= 1
            (6 for 128² images; fewer for small demo images).
        c_dim: domains (healthy, lesion).
        lambda_cls, lambda_rec, lambda_id, lambda_gp: weights of the domain-classification,
            cycle-reconstruction, identity and gradient-penalty losses.
        n_critic: discriminator updates per generator update.
        g_lr, d_lr, beta1, beta2: Adam settings.
        decay_from: fraction of the training budget after which both learning rates fall linearly to 0.
        critic_fakes: fakes per real slice in the critic's update. 1 (default) = the official solver:
            ``x`` sent to its target domain only, gradient penalty on those interpolates. 2 = the
            paper's revised adversarial loss taken literally: also ``x`` sent to its own domain, the
            critic averaging its scores over both fakes and the penalty over both real–fake pairs
            (1.9× the critic's cost; with two domains the solver's permuted targets already make about
            half of the fakes own-domain translations).
        upsampling: the generator's two upsampling layers: ``"transposed"`` (default: StarGAN's and the
            official code's 4×4 stride-2 transposed convolutions) or ``"resize"`` (nearest ×2, then
            3×3; beyond the paper): a transposed convolution gives even and odd pixels different
            kernel taps and can leave a period-2 stripe pattern where the generator changes the most
            (:class:`~.torch_model.Generator`).
        critic_gemm: a speed switch of this model: the critic's convolutions with at most 4×4 output
            pixels (at the paper's widths the last two: few pixels, up to 33M weights) as one matrix
            multiply of unfolded patches instead of a direct convolution — the same sums in another
            order, 1.5–3× faster for those layers on a CPU (:class:`~.torch_model.GemmConv2d`).
        channels_last, mixed_precision, fused_optimizer: speed switches
            (:class:`~adunet_lib.anomaly_models.base.SpeedOptions`).
    """

    conv_dim: int = 64
    n_res_blocks: int = 6
    d_layers: int = 6
    c_dim: int = 2
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_id: float = 10.0
    lambda_gp: float = 10.0
    n_critic: int = 5
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_from: float = 0.5
    critic_fakes: int = 1
    upsampling: str = "transposed"
    critic_gemm: bool = False
    #: this model's own speed switches, beside SpeedOptions' (see ``base.speed_switches``)
    model_speed_options: ClassVar[tuple[str, ...]] = ("critic_gemm",)


def _linear_decay(total_iterations: int, decay_from: float):
    """Learning-rate factor after ``t`` iterations: 1 until ``decay_from * total``, then linearly to 0."""
    start = int(decay_from * total_iterations)
    span = total_iterations - start

    def factor(t: int) -> float:
        if t < start or span <= 0:
            return 1.0
        return max(0.0, (total_iterations - t) / span)

    return factor


def _gradient_penalty(critic: Discriminator, real: torch.Tensor, fake: torch.Tensor,
                      precision: Callable[[], contextlib.AbstractContextManager]) -> torch.Tensor:
    """WGAN-GP: (‖∇D(x̂)‖₂ − 1)² on random interpolates x̂ of real and fake slices (one per pair).

    ``precision()`` wraps the critic's forward pass (autocast or nothing); the norm is taken in fp32.
    """
    # drawn on the CPU: the checkpointed CPU RNG state alone makes a resumed run draw the same numbers
    alpha = torch.rand(real.shape[0], 1, 1, 1).to(real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    with precision():
        scores, _ = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.float().sum(), x_hat, create_graph=True)
    # vector_norm has a defined gradient at 0, unlike sqrt(sum(g²))
    return ((torch.linalg.vector_norm(grad.flatten(1), dim=1) - 1) ** 2).mean()


@register("fpgan", "FP GAN")
class FixedPointGAN(ReconstructionModel):
    """Fixed-Point GAN: ``reconstruct`` translates every slice to the healthy domain.

    Training follows the official solver (Siddiquee et al.'s ``solver.py``) with WGAN-GP. Each batch
    gets target domains by permuting its own labels. Every iteration updates the critic on the real
    slices (adversarial + domain classification) and on one fake per real slice, ``G(x, c_trg)``, with
    the gradient penalty on their interpolates; every ``n_critic``-th iteration also updates the
    generator: adversarial and classification losses on ``G(x, c_trg)`` and on ``G(x, c_x)``, cycle
    reconstruction of both back to ``c_x``, and the identity loss ``|x − G(x, c_x)|``. Images are
    mapped to [-1, 1] inside the model.

    Per iteration the critic sees 3 slices per real one (real, fake, interpolate) and the generator 1;
    an iteration with a generator update sends 4 slices per real one through the generator (the solver:
    5 — it translates ``x`` to its target once for the critic and again for the generator, with the
    same weights; here that translation is made once, and the critic gets it detached) and 2 more
    through the critic. ``critic_fakes=2`` adds own-domain fakes to the critic's update.

    Example:
        >>> from adunet_lib.anomaly_models import create
        >>> gan = create("fpgan", in_channels=1, image_size=32, config=FixedPointGAN.smoke_config())
        >>> gan.reconstruct(torch.rand(4, 1, 32, 32)).shape
        torch.Size([4, 1, 32, 32])
    """

    uses_labels = True
    # the reference code trains with random horizontal flips (StarGAN's data loader)
    flip_augmentation = True
    Config = FPGANConfig

    def __init__(self, in_channels: int, image_size: int, config: Any = None, device: str | torch.device = "cpu"):
        super().__init__(in_channels, image_size, config, device)
        c = self.config
        if c.c_dim < 2:
            raise ValueError(f"c_dim must be at least 2 (healthy, lesion), got {c.c_dim}")
        if c.n_critic < 1:
            raise ValueError(f"n_critic must be at least 1, got {c.n_critic}")
        if c.critic_fakes not in (1, 2):
            raise ValueError(f"critic_fakes must be 1 (the official solver) or 2 (own-domain fakes too), "
                             f"got {c.critic_fakes}")
        if image_size % Generator.stride:
            raise ValueError(f"fpgan: image_size must be a multiple of {Generator.stride}, got {image_size}")
        self.generator = Generator(in_channels, c.c_dim, c.conv_dim, c.n_res_blocks, c.upsampling)
        self.discriminator = Discriminator(in_channels, image_size, c.c_dim, c.conv_dim, c.d_layers)
        if c.critic_gemm:
            self.discriminator.use_gemm()
        self._prepare(self.generator, self.discriminator)
        self._opt: dict[str, torch.optim.Optimizer] = {}
        self._sched: dict[str, Any] = {}
        # the loss table needs fixed columns: G losses are repeated between generator updates
        self._last_g = dict.fromkeys(_G_KEYS, 0.0)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {"conv_dim": 8, "n_res_blocks": 1, "d_layers": 3}

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return dict(self._opt)

    def schedulers(self) -> dict[str, Any]:
        return dict(self._sched)

    def configure(self, total_iterations: int, epoch_length: int) -> None:
        c = self.config
        betas = (c.beta1, c.beta2)
        options = self._optimizer_options()
        self._opt = {"generator": torch.optim.Adam(self.generator.parameters(), c.g_lr, betas, **options),
                     "discriminator": torch.optim.Adam(self.discriminator.parameters(), c.d_lr, betas, **options)}
        decay = _linear_decay(total_iterations, c.decay_from)
        # each scheduler steps only after its own optimiser: the critic's counts iterations, the
        # generator's counts its updates, which happen once every n_critic iterations
        self._sched = {
            "generator": torch.optim.lr_scheduler.LambdaLR(self._opt["generator"],
                                                           lambda k: decay(k * c.n_critic)),
            "discriminator": torch.optim.lr_scheduler.LambdaLR(self._opt["discriminator"], decay),
        }

    # -- training --------------------------------------------------------------------------------
    def _one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.config.c_dim).float()

    def train_step(self, batch: SliceBatch) -> dict[str, float]:
        if not self._opt:
            raise RuntimeError("fpgan: call configure(total_iterations, epoch_length) before train_step")
        c = self.config
        x = self._input(batch.images) * 2 - 1
        label_org = batch.labels.to(self.device).long()
        # the solver's target domains: the batch's own labels in random order (drawn on the CPU, so
        # that the checkpointed CPU RNG state alone makes a resumed run draw the same permutation)
        label_trg = label_org[torch.randperm(len(label_org)).to(self.device)]
        c_org, c_trg = self._one_hot(label_org), self._one_hot(label_trg)
        update_generator = (self.step + 1) % c.n_critic == 0

        # Translations x → c_trg and x → c_x in one generator call on the stacked batch (instance norm
        # treats slices independently). With a generator update due they are made with a graph and
        # serve both updates (the critic's update does not touch the generator); otherwise the
        # critic's fakes alone, without one.
        with self._autocast(), torch.set_grad_enabled(update_generator):
            if update_generator or c.critic_fakes == 2:
                fakes = self.generator(torch.cat([x, x]), torch.cat([c_trg, c_org]))
            else:
                fakes = self.generator(x, c_trg)
        d_losses = self._critic_step(x, label_org, fakes[:len(x) * c.critic_fakes].detach())
        if update_generator:
            self._last_g = self._generator_step(x, fakes, label_org, label_trg, c_org)
        return {**d_losses, **self._last_g, "lr": float(self._sched["discriminator"].get_last_lr()[0])}

    def _critic_step(self, x: torch.Tensor, label_org: torch.Tensor, fakes: torch.Tensor) -> dict[str, float]:
        """One critic update on the real slices and ``fakes`` (one or two per real slice, detached)."""
        c = self.config
        n = len(x)
        reals = x.repeat(len(fakes) // n, 1, 1, 1)
        # real and fake slices in one call: the critic has no normalisation, slices stay independent
        with self._autocast():
            scores, logits = self.discriminator(torch.cat([x, fakes]))
        scores, logits = scores.float(), logits.float()
        # with two fakes their scores are averaged, not summed: with a Wasserstein critic unequal
        # weights on real and fake reward shifting every score down without bound
        d_adv = scores[n:].mean() - scores[:n].mean()
        d_cls = F.cross_entropy(logits[:n], label_org)
        d_gp = _gradient_penalty(self.discriminator, reals, fakes, self._autocast)
        d_loss = d_adv + c.lambda_cls * d_cls + c.lambda_gp * d_gp
        self._opt["discriminator"].zero_grad(set_to_none=True)
        d_loss.backward()
        self._opt["discriminator"].step()
        self._sched["discriminator"].step()
        return {"d_loss": float(d_loss.detach()), "d_adv": float(d_adv.detach()), "d_cls": float(d_cls.detach()),
                "d_gp": float(d_gp.detach())}

    def _generator_step(self, x: torch.Tensor, fakes: torch.Tensor, label_org: torch.Tensor, label_trg: torch.Tensor,
                        c_org: torch.Tensor) -> dict[str, float]:
        """One generator update; ``fakes`` = ``[G(x, c_trg); G(x, c_x)]`` with their graph."""
        c = self.config
        n = len(x)
        # the critic is only a loss here: skip its parameter gradients
        self.discriminator.requires_grad_(False)
        try:
            with self._autocast():
                # both translations back to the own domain
                cycled = self.generator(fakes, torch.cat([c_org, c_org]))
                scores, logits = self.discriminator(fakes)
            scores, logits = scores.float(), logits.float()
            g_adv = -scores[:n].mean() - scores[n:].mean()
            g_cls = F.cross_entropy(logits[:n], label_trg) + F.cross_entropy(logits[n:], label_org)
            g_rec = (x - cycled[:n]).abs().mean() + (x - cycled[n:]).abs().mean()
            g_id = (x - fakes[n:]).abs().mean()
            g_loss = g_adv + c.lambda_cls * g_cls + c.lambda_rec * g_rec + c.lambda_id * g_id
            self._opt["generator"].zero_grad(set_to_none=True)
            g_loss.backward()
            self._opt["generator"].step()
            self._sched["generator"].step()
        finally:
            self.discriminator.requires_grad_(True)
        return {"g_adv": float(g_adv.detach()), "g_cls": float(g_cls.detach()), "g_rec": float(g_rec.detach()),
                "g_id": float(g_id.detach())}

    # -- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        healthy = torch.full((x.shape[0],), HEALTHY, dtype=torch.long, device=x.device)
        with self._autocast():
            return (self.generator(self._input(x) * 2 - 1, self._one_hot(healthy)).float() + 1) / 2

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # the last generator losses, so a resumed run logs what an uninterrupted one would
        return {**super().state_dict(), "last_generator_losses": dict(self._last_g)}

    def load_state_dict(self, state: dict[str, Any], weights_only: bool = False) -> None:
        super().load_state_dict(state, weights_only)
        if not weights_only:
            self._last_g = {k: float(state.get("last_generator_losses", {}).get(k, 0.0)) for k in _G_KEYS}
