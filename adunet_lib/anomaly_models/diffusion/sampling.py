"""Noise schedule, forward noising and Wolleb's pseudo-healthy translation by guided DDIM.

Notation follows Ho et al. (2020) and Song et al. (2021): ``ᾱ_t`` is the cumulative product of
``1 - β``; a noised slice is ``x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε``. Timesteps are 0-based (``0 … T-1``) as the
networks see them; the clean image sits one level below timestep 0, at ᾱ = 1.

Wolleb et al. (2022) translate a slice to a healthy one by

1. *encoding* it deterministically (DDIM, η = 0, no guidance) up to noise level L, then
2. *decoding* back to a clean image with DDIM whose noise estimate is pushed toward "healthy" by the
   noise-aware classifier: ``ε̂ = ε_θ(x_t, t) − s·√(1 − ᾱ_t)·∇_{x_t} log p_φ(healthy | x_t, t)``.

Visiting only ``ddim_steps`` of the L levels ("fast guided diffusion") costs ``ddim_steps`` ε-network
calls each way plus ``ddim_steps`` classifier gradients when s > 0. With s = 0 decoding is the exact
mirror of encoding, so a perfect ε-network gives back the input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

#: ``eps = model(x_t, t)`` and ``logits = classifier(x_t, t)`` with ``t`` a ``(B,)`` long tensor.
NetworkFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

HEALTHY = 0


def beta_schedule(timesteps: int = 1000, schedule: str = "linear_beta", beta_start: float = 1e-4,
                  beta_end: float = 0.02) -> torch.Tensor:
    """``(T,)`` float64 betas from one of MONAI's ``NoiseSchedules`` (``linear_beta`` as in the paper)."""
    from monai.networks.schedulers.scheduler import NoiseSchedules

    if schedule not in NoiseSchedules.names:
        raise ValueError(f"unknown noise schedule {schedule!r}; MONAI offers {', '.join(NoiseSchedules.names)}")
    kwargs = {} if schedule == "cosine" else {"beta_start": beta_start, "beta_end": beta_end}
    betas = NoiseSchedules[schedule](timesteps, **kwargs)
    if isinstance(betas, tuple):  # some schedules return (betas, alphas, alphas_cumprod)
        betas = betas[0]
    # float64: ᾱ is a product of 1000 factors and √(1 - ᾱ) near t = 0 is ~0.01
    return betas.to(torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """ᾱ_t = Π_{s ≤ t} (1 - β_s), float64."""
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Forward noising ``x_t = √ᾱ_t x_0 + √(1 - ᾱ_t) ε`` for a ``(B,)`` vector of timesteps."""
    a = alpha_bar.to(x0.device)[t].to(x0.dtype).view(-1, *[1] * (x0.ndim - 1))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def ddim_timesteps(noise_level: int, ddim_steps: int) -> list[int]:
    """The ``ddim_steps`` timesteps visited between the clean image and noise level L, ascending.

    Evenly spaced, ending at ``L - 1`` (the L-th noising step); ``ddim_steps = L`` visits every one.

    Example:
        >>> ddim_timesteps(500, 5)
        [99, 199, 299, 399, 499]
    """
    if not 1 <= ddim_steps <= noise_level:
        raise ValueError(f"ddim_steps must be in 1..noise_level ({noise_level}), not {ddim_steps}")
    return [round((k + 1) * noise_level / ddim_steps) - 1 for k in range(ddim_steps)]


def _level(alpha_bar: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
    """ᾱ at timestep t; t = -1 is the clean image (ᾱ = 1)."""
    value = 1.0 if t < 0 else float(alpha_bar[t])
    return torch.tensor(value, dtype=torch.float64).to(like.device)


def _ddim_move(x: torch.Tensor, eps: torch.Tensor, a_from: torch.Tensor, a_to: torch.Tensor,
               clip: bool) -> torch.Tensor:
    """One deterministic DDIM step from level ᾱ_from to ᾱ_to given the noise estimate at ᾱ_from."""
    x64, eps64 = x.to(torch.float64), eps.to(torch.float64)
    x0 = (x64 - (1 - a_from).sqrt() * eps64) / a_from.sqrt()
    if clip:
        x0 = x0.clamp(-1, 1)
        # keep the step consistent with the clipped estimate (as guided-diffusion does)
        eps64 = (x64 - a_from.sqrt() * x0) / (1 - a_from).sqrt()
    return (a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps64).to(x.dtype)


def _timestep(t: int, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)


def ddim_encode(model: NetworkFn, x0: torch.Tensor, alpha_bar: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
    """Deterministic DDIM inversion of ``x0`` (in [-1, 1]) up to the last of ``timesteps``.

    Each step evaluates ε at the level the sample is at; the clean image has no timestep of its own, so
    its ε comes from timestep 0 (√(1 - ᾱ_0) = 0.01, as guided-diffusion's ``ddim_reverse_sample``).

    Args:
        model: the ε-network.
        x0: ``(B, C, H, W)`` clean slices in [-1, 1].
        alpha_bar: ``(T,)`` ᾱ.
        timesteps: ascending, from :func:`ddim_timesteps`.

    Returns:
        x_L, the latent at the last timestep.
    """
    x = x0
    levels = [-1, *timesteps]
    for t_from, t_to in zip(levels[:-1], levels[1:]):
        eps = model(x, _timestep(max(t_from, 0), x))
        x = _ddim_move(x, eps, _level(alpha_bar, t_from, x), _level(alpha_bar, t_to, x), clip=False)
    return x


def classifier_gradient(classifier: NetworkFn, x: torch.Tensor, t: torch.Tensor, target: int = HEALTHY) -> torch.Tensor:
    """∇_x log p(target | x, t), one gradient per slice (the classifier must not mix the batch)."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        log_p = F.log_softmax(classifier(x_in, t), dim=-1)[:, target]
        return torch.autograd.grad(log_p.sum(), x_in)[0]


def ddim_decode(model: NetworkFn, x: torch.Tensor, alpha_bar: torch.Tensor, timesteps: list[int],
                classifier: NetworkFn | None = None, guidance_scale: float = 0.0, target: int = HEALTHY,
                clip_denoised: bool = True) -> torch.Tensor:
    """Deterministic DDIM from the last of ``timesteps`` down to a clean image, optionally guided.

    Args:
        model: the ε-network.
        x: ``(B, C, H, W)`` latent at ``timesteps[-1]``.
        alpha_bar: ``(T,)`` ᾱ.
        timesteps: ascending, from :func:`ddim_timesteps` (the same list the encoding used).
        classifier: the noise-aware classifier (needed when ``guidance_scale`` is not 0).
        guidance_scale: s; ε̂ = ε − s·√(1 − ᾱ_t)·∇ log p(target | x_t, t).
        target: class to steer toward (0 = healthy).
        clip_denoised: clip each x̂_0 estimate to [-1, 1] (guided-diffusion's default; strong guidance
            otherwise overshoots the intensity range).

    Returns:
        The decoded clean slices in (about) [-1, 1].
    """
    if guidance_scale and classifier is None:
        raise ValueError("guidance_scale != 0 needs a classifier")
    levels = [-1, *timesteps]
    for t_to, t_from in zip(reversed(levels[:-1]), reversed(levels[1:])):
        t = _timestep(t_from, x)
        a_from = _level(alpha_bar, t_from, x)
        eps = model(x, t)
        if guidance_scale:
            grad = classifier_gradient(classifier, x, t, target)
            eps = eps - (guidance_scale * (1 - a_from).sqrt()).to(eps.dtype) * grad
        x = _ddim_move(x, eps, a_from, _level(alpha_bar, t_to, x), clip=clip_denoised)
    return x
