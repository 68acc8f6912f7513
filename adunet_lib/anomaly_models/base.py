"""The one interface every reconstruction model implements.

A model is a plain Python object that owns its ``nn.Module`` s, optimisers and schedulers. The
training loop only calls :meth:`ReconstructionModel.train_step` — the model does its own backward
passes, so a GAN can update its discriminator and generator as it needs — and
:meth:`ReconstructionModel.reconstruct`, which always returns a tensor of the input's shape in [0, 1].
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn


@dataclasses.dataclass
class SliceBatch:
    """A batch of 2D slices.

    Attributes:
        images: ``(B, C, H, W)`` float in [0, 1] (C = number of sequences the model sees).
        labels: ``(B,)`` long, 0 = healthy slice, 1 = slice with lesion.
        masks: ``(B, 1, H, W)`` float gland mask (1 inside).
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor

    def to(self, device: torch.device | str) -> SliceBatch:
        return SliceBatch(self.images.to(device), self.labels.to(device), self.masks.to(device))

    def rows(self, start: int, step: int) -> SliceBatch:
        """Rows ``start, start + step, …`` (one process's share of a global batch)."""
        return SliceBatch(self.images[start::step], self.labels[start::step], self.masks[start::step])


@dataclasses.dataclass
class SpeedOptions:
    """Speed switches every built-in model's ``Config`` inherits; all off = the plain fp32 path.

    None of them changes the algorithm; each changes rounding only (tested: equal results within
    tolerance after a few training steps, ``tests/anomaly_models/test_speed_options.py``). They are
    hyperparameters like any other, so switching one on trains a model folder again.

    Attributes:
        channels_last: networks and inputs in NHWC memory format (faster convolutions on many CPUs
            and on tensor-core GPUs).
        mixed_precision: bf16 autocast for training and reconstruction where the hardware computes
            bf16 natively (CPUs with AVX512-BF16 or AMX, CUDA GPUs of compute capability 8 or newer);
            elsewhere the model silently stays in fp32 (older GPUs too: fp16 would need loss scaling,
            which the gradient penalty's double backward complicates). Losses, the gradient penalty's
            norm and the DDIM updates stay fp32; weights and optimiser states are always fp32.
        fused_optimizer: fused optimiser kernels (one kernel for all parameters, CPU and CUDA);
            otherwise torch's default implementation.
    """

    channels_last: bool = False
    mixed_precision: bool = False
    fused_optimizer: bool = False


def speed_switches(config_cls: type) -> tuple[str, ...]:
    """The speed switches a model's ``Config`` has: :class:`SpeedOptions`' (when it inherits them) and
    its own, named in its ``model_speed_options`` class attribute (e.g. the FP-GAN's ``critic_gemm``)."""
    shared = tuple(SpeedOptions.__dataclass_fields__) if isinstance(config_cls, type) and \
        issubclass(config_cls, SpeedOptions) else ()
    return shared + tuple(getattr(config_cls, "model_speed_options", ()))


def bf16_native(device: torch.device) -> bool:
    """Does ``device`` compute bf16 natively (so that bf16 autocast is a speed-up, not an emulation)?"""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return torch.backends.mkldnn.is_available() and any(check is not None and check() for check in checks)
    return False


class ReconstructionModel(abc.ABC):
    """Base class of the registered models.

    Subclasses define a ``Config`` dataclass of hyperparameters (defaults = the paper's settings),
    build their networks in ``__init__``, optimisers/schedulers in :meth:`configure`, and implement
    :meth:`train_step` and :meth:`reconstruct`.

    Class attributes:
        name: registry name (set by ``@register``); params, folders and records use it.
        display_name: how tables and figures name the model (defaults to ``name``).
        uses_labels: True when training needs lesion slices and slice labels (FP-GAN, the diffusion
            model's classifier); False when it learns from healthy slices only (autoencoders).
        flip_augmentation: random left-right flips of training batches (off where the published
            method trains without augmentation, e.g. the DDPM).
        Config: the hyperparameter dataclass (the built-in ones inherit :class:`SpeedOptions`; the
            helpers below read those switches with ``getattr``, so a Config without them runs plain).
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False
    flip_augmentation: ClassVar[bool] = True
    Config: ClassVar[type] = object

    def __init__(self, in_channels: int, image_size: int, config: Any = None, device: str | torch.device = "cpu"):
        if in_channels < 1:
            raise ValueError("in_channels must be at least 1")
        self.in_channels = int(in_channels)
        self.image_size = int(image_size)
        self.config = self.resolve_config(config)
        self.device = torch.device(device)
        self.step = 0
        #: bf16 autocast is on: asked for (``mixed_precision``) and native on this device
        self.bf16 = bool(getattr(self.config, "mixed_precision", False)) and bf16_native(self.device)

    # -- configuration -------------------------------------------------------------------------
    @classmethod
    def resolve_config(cls, config: Any) -> Any:
        """A ``Config`` instance from None (defaults), a dict of overrides, or a ``Config``."""
        if config is None:
            return cls.Config()
        if isinstance(config, cls.Config):
            return config
        if isinstance(config, dict):
            known = {f.name for f in dataclasses.fields(cls.Config)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise ValueError(f"{cls.name}: unknown hyperparameter(s) {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(known))}")
            return cls.Config(**config)
        raise TypeError(f"{cls.name}: config must be a dict or {cls.Config.__name__}")

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """Hyperparameter overrides that make the model tiny (contract tests, smoke runs)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, JSON-able (stored in every checkpoint)."""
        return {"model": self.name, "in_channels": self.in_channels, "image_size": self.image_size,
                **dataclasses.asdict(self.config)}

    # -- what subclasses implement -------------------------------------------------------------
    @abc.abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """Named networks (their weights are checkpointed)."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def schedulers(self) -> dict[str, Any]:
        return {}

    def configure(self, total_iterations: int, epoch_length: int) -> None:
        """Build optimisers and schedulers once the training budget is known."""

    @abc.abstractmethod
    def train_step(self, batch: SliceBatch) -> dict[str, float]:
        """One optimisation step (the model runs its own backward passes); returns scalar losses."""

    @abc.abstractmethod
    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pseudo-healthy version of ``x`` (networks in eval mode, no gradients)."""

    # -- speed options (see SpeedOptions) -------------------------------------------------------
    def _channels_last(self) -> bool:
        return bool(getattr(self.config, "channels_last", False))

    def _prepare(self, *nets: nn.Module) -> None:
        """Move freshly built networks to the model's device (and memory format); call from ``__init__``."""
        for net in nets:
            net.to(self.device)
            if self._channels_last():
                net.to(memory_format=torch.channels_last)

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the model's device as fp32, in the networks' memory format."""
        x = x.to(self.device, torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last() and x.ndim == 4 else x

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when :attr:`bf16` is on, else a no-op; wrap forward passes, not ``backward()``."""
        return torch.autocast(self.device.type, torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def _optimizer_options(self) -> dict[str, Any]:
        """Keyword arguments for ``torch.optim.Adam`` / ``SGD``: ``fused=True`` when asked for and available."""
        fused = getattr(self.config, "fused_optimizer", False) and self.device.type in ("cpu", "cuda")
        return {"fused": True} if fused else {}

    # -- shared behaviour ----------------------------------------------------------------------
    def reconstruct(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Pseudo-healthy slices G(x): same shape as ``x`` (``(B, C, H, W)`` in [0, 1]), on ``x``'s device."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self.name}: expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        for net in self.networks().values():
            net.eval()
        outs = []
        for start in range(0, x.shape[0], batch_size):
            chunk = x[start:start + batch_size].to(self.device, torch.float32)
            out = self._reconstruct(chunk)
            # contiguous: channels_last networks return NHWC strides, callers expect plain tensors
            outs.append(out.detach().float().clamp(0, 1).contiguous().to(x.device))
        for net in self.networks().values():
            net.train()
        return torch.cat(outs) if outs else x.clone()

    def train(self) -> None:
        for net in self.networks().values():
            net.train()

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser and scheduler states and the step counter (tensors and primitives only)."""
        return {
            "step": self.step,
            "networks": {k: v.state_dict() for k, v in self.networks().items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers().items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers().items()},
        }

    def load_state_dict(self, state: dict[str, Any], weights_only: bool = False) -> None:
        """Restore :meth:`state_dict`; with ``weights_only`` just the networks (for inference)."""
        for key, net in self.networks().items():
            net.load_state_dict(state["networks"][key])
        if weights_only:
            return
        self.step = int(state["step"])
        for key, opt in self.optimizers().items():
            opt.load_state_dict(state["optimizers"][key])
        for key, sched in self.schedulers().items():
            sched.load_state_dict(state["schedulers"][key])
