"""Reconstruction models that turn a slice into a pseudo-healthy slice G(x), behind one interface.

- :mod:`.base` — :class:`~.base.ReconstructionModel` (train step owns its backward; ``reconstruct``)
- :mod:`.registry` — the explicit registry: ``MODELS`` filled by ``@register("name")``
- :mod:`.data` — slice datasets built from the preprocessed run folder
- :mod:`.training` — seeded, resumable training with checkpoints and TensorBoard
- one folder per model: ``autoencoder/`` (dense_ae, spatial_ae), ``diffusion/`` (ddpm), ``fpgan/``
"""

from adunet_lib.anomaly_models.base import ReconstructionModel, SliceBatch
from adunet_lib.anomaly_models.registry import MODELS, available, create, register

__all__ = ["MODELS", "ReconstructionModel", "SliceBatch", "available", "create", "register"]
