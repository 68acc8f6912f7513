"""Segmentation with real nnU-Net v2: dataset export, plan/preprocess/train/predict, detection maps."""
