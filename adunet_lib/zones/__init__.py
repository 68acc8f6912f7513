"""Prostate zone segmentation (PZ/TZ) with nnU-Net v2: the masks the crop uses when none are given."""
