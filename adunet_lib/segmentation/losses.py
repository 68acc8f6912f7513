"""The PI-CAI baseline's nnU-Net loss: focal loss plus cross-entropy, half each.

PI-CAI's baseline trains nnU-Net with ``nnUNetTrainerV2_Loss_FL_and_CE`` (nnU-Net v1): 0.5 · focal
(γ = 2, no class weights) + 0.5 · cross-entropy over the softmax classes, in place of nnU-Net's
Dice + cross-entropy. csPCa lesions fill a tiny share of each patch; the focal term spends the
gradient on the voxels the network still gets wrong, which the baseline found better for detection.
nnU-Net v2 ships no such trainer, so :mod:`adunet_lib.segmentation._worker` gives this loss to its
standard trainer (``segmentation.loss: focal_ce``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalAndCrossEntropy(nn.Module):
    """``weight_focal · focal + (1 − weight_focal) · cross-entropy``, each the mean over voxels.

    Args:
        gamma: focal exponent: a voxel predicted right with probability p weighs (1 − p)^γ.
        weight_focal: the focal term's share (PI-CAI: 0.5).
        ignore_label: a label whose voxels count in neither term (nnU-Net's ignore label), or None.

    Example:
        >>> loss = FocalAndCrossEntropy()
        >>> logits, target = torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4)
        >>> round(float(loss(logits, target)), 4)  # p = 0.5 everywhere: CE ln 2, focal ln 2 / 4
        0.4332
    """

    def __init__(self, gamma: float = 2.0, weight_focal: float = 0.5, ignore_label: int | None = None):
        super().__init__()
        self.gamma, self.weight_focal, self.ignore_label = float(gamma), float(weight_focal), ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, C, …); ``target`` (B, 1, …) or (B, …) of class indices, as nnU-Net passes it."""
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.long()
        keep = torch.ones_like(target, dtype=torch.bool) if self.ignore_label is None else target != self.ignore_label
        target = torch.where(keep, target, torch.zeros_like(target))
        ce = F.cross_entropy(logits.float(), target, reduction="none")  # −log p of the true class, per voxel
        focal = (1 - torch.exp(-ce)) ** self.gamma * ce
        n = keep.sum().clamp_min(1)
        return (self.weight_focal * (focal * keep).sum() + (1 - self.weight_focal) * (ce * keep).sum()) / n
