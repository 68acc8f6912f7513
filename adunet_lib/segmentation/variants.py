"""The compared models: nnU-Net baseline and adU-Net with one or all anomaly maps as extra channels."""

from __future__ import annotations

#: variant → anomaly-map sequences appended after T2W, ADC, hbv (the paper's Table II rows)
VARIANTS: dict[str, tuple[str, ...]] = {
    "baseline": (),
    "adunet_t2w": ("t2w",),
    "adunet_adc": ("adc",),
    "adunet_dwi": ("hbv",),
    "adunet_all": ("t2w", "adc", "hbv"),
}

DISPLAY = {
    "baseline": "nnU-Net baseline",
    "adunet_t2w": "adU-Net(T2W)",
    "adunet_adc": "adU-Net(ADC)",
    "adunet_dwi": "adU-Net(DWI)",
    "adunet_all": "adU-Net(all bpMRI)",
}

#: nnU-Net picks a normalisation per input channel from its *name*.
#: Sequences: per-image z-score (nnU-Net's default for MRI, also what the PI-CAI baseline uses).
#: Anomaly maps: "noNorm". A map is already on a scale shared by all cases (a difference of [0, 1]
#: normalised intensities, 0 outside the gland); z-scoring it per image would divide each case by
#: its own spread, blowing a healthy case's faint residual up to look like a lesion and erasing
#: exactly the "how anomalous" information the map carries. "CT" normalisation would instead clip
#: with percentiles of lesion (foreground) voxels only.
SEQUENCE_CHANNELS = {"t2w": "T2W", "adc": "ADC", "hbv": "HBV"}
MAP_CHANNEL = "noNorm"


def channel_names(variant: str) -> dict[str, str]:
    """``dataset.json``'s ``channel_names`` for ``variant``."""
    names = list(SEQUENCE_CHANNELS.values()) + [MAP_CHANNEL] * len(VARIANTS[variant])
    return {str(i): n for i, n in enumerate(names)}
