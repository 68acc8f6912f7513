"""Checkpoints: weights + resolved config (+ optimiser / RNG state), loadable with ``weights_only=True``.

Nothing is pickled but tensors and primitives, so loading a checkpoint never runs code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from adunet_lib.anomaly_models.base import ReconstructionModel
from adunet_lib.anomaly_models.registry import create
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import atomic_path

FORMAT = 1


def save_checkpoint(path: str | Path, model: ReconstructionModel, training: dict[str, Any],
                    extra_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``{format, config, training, state, rng}`` atomically."""
    payload = {
        "format": FORMAT,
        "config": model.describe(),
        "training": training,
        "state": model.state_dict(),
        "rng": {"torch": torch.get_rng_state(), **(extra_state or {})},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``); a clear error when it is not one."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise AdunetError(f"{path}: not a readable adunet checkpoint ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AdunetError(f"{path}: not an adunet checkpoint (format {FORMAT})")
    return payload


def load_model(path: str | Path, device: str = "cpu") -> ReconstructionModel:
    """Rebuild a model from a checkpoint (weights only, for inference)."""
    payload = read_checkpoint(path)
    config = dict(payload["config"])
    name = config.pop("model")
    in_channels, image_size = config.pop("in_channels"), config.pop("image_size")
    model = create(name, in_channels, image_size, config, device=device)
    model.load_state_dict(payload["state"], weights_only=True)
    return model
