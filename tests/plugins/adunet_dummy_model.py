"""A fifth reconstruction model, added the README's way from outside the package.

One file (this one) + one registry line (its module in ``ADUNET_MODEL_MODULES``, which the test
session sets) + its name in a params block: the integration test then trains it, tables it (Table I),
draws it (Fig. 3) and makes maps with it — with no other change to adunet.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adunet_lib.anomaly_models.base import ReconstructionModel, SliceBatch
from adunet_lib.anomaly_models.registry import register


@dataclasses.dataclass
class SmootherConfig:
    width: int = 8
    lr: float = 1e-2


@register("dummy_smoother", "Dummy Smoother")
class DummySmoother(ReconstructionModel):
    """A two-layer convolutional smoother trained with L1 on healthy slices."""

    uses_labels = False
    Config = SmootherConfig

    def __init__(self, in_channels: int, image_size: int, config: Any = None, device: str | torch.device = "cpu"):
        super().__init__(in_channels, image_size, config, device)
        w = self.config.width
        self.net = nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(w, in_channels, 3, padding=1)).to(self.device)
        self._opt: torch.optim.Optimizer | None = None

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {"width": 4}

    def networks(self) -> dict[str, nn.Module]:
        return {"smoother": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"smoother": self._opt} if self._opt else {}

    def configure(self, total_iterations: int, epoch_length: int) -> None:
        self._opt = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)

    def train_step(self, batch: SliceBatch) -> dict[str, float]:
        loss = F.l1_loss(torch.sigmoid(self.net(batch.images)), batch.images)
        self._opt.zero_grad(set_to_none=True)
        loss.backward()
        self._opt.step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))
