"""One vocabulary for every stage: sequences, sets and splits, slice labels, nnU-Net variants.

Everything that names a sequence, a set, a split or a variant imports it from here, so a name is
spelled once and a display name is chosen once.
"""

from __future__ import annotations

import dataclasses

#: The bpMRI sequences, in channel order everywhere (model channels, nnU-Net channels 0..2).
SEQUENCES: tuple[str, str, str] = ("t2w", "adc", "hbv")
#: How the paper names them in tables and figures ("DWI" is the high-b image, hbv).
SEQUENCE_DISPLAY = {"t2w": "T2W", "adc": "ADC", "hbv": "DWI"}

#: Data sets of a run: ``internal`` (training + validation folds) and ``external`` (held-out test).
INTERNAL, EXTERNAL = "internal", "external"
SETS: tuple[str, str] = (INTERNAL, EXTERNAL)
#: Splits: internal cases are ``train`` or ``val`` (fold 0 held out); external cases are ``test``.
TRAIN, VAL, TEST = "train", "val", "test"
#: The splits that are evaluated, and how tables name them.
EVALUATED_SPLITS = {VAL: "validation", TEST: "external test"}

#: Slice labels of the slice table (``slices.csv``) and their integer codes for the models.
HEALTHY, LESION, UNKNOWN = "healthy", "lesion", "unknown"
LABEL_CODES = {HEALTHY: 0, LESION: 1, UNKNOWN: -1}

#: Preprocessing modes: gland-cropped and masked (the paper's final setup) or the full field of view.
CROPPED, FULL = "cropped", "full"
MODES: tuple[str, str] = (CROPPED, FULL)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One compared nnU-Net model: the three sequences plus anomaly maps of ``maps`` as extra channels.

    Its channel layout is the single source for ``dataset.json``, the raw-data export and
    ``adunet predict``.

    Example:
        >>> VARIANTS["adunet_adc"].channels()
        [('sequence', 't2w'), ('sequence', 'adc'), ('sequence', 'hbv'), ('map', 'adc')]
    """

    name: str
    display: str
    maps: tuple[str, ...]

    def channels(self) -> list[tuple[str, str]]:
        """``(kind, sequence)`` per nnU-Net channel, in channel order."""
        return [("sequence", s) for s in SEQUENCES] + [("map", s) for s in self.maps]

    def channel_names(self) -> dict[str, str]:
        """``dataset.json``'s ``channel_names``: nnU-Net picks each channel's normalisation by name."""
        return {str(i): (SEQUENCE_CHANNEL_NAMES[s] if kind == "sequence" else MAP_CHANNEL_NAME)
                for i, (kind, s) in enumerate(self.channels())}


#: nnU-Net picks a normalisation per input channel from its *name*.
#: Sequences: per-image z-score (nnU-Net's default for MRI, also what the PI-CAI baseline uses).
#: Anomaly maps: "noNorm". A map is already on a scale shared by all cases (a difference of [0, 1]
#: normalised intensities, 0 outside the gland); z-scoring it per image would divide each case by
#: its own spread, blowing a healthy case's faint residual up to look like a lesion and erasing
#: exactly the "how anomalous" information the map carries. "CT" normalisation would instead clip
#: with percentiles of lesion (foreground) voxels only.
SEQUENCE_CHANNEL_NAMES = {"t2w": "T2W", "adc": "ADC", "hbv": "HBV"}
MAP_CHANNEL_NAME = "noNorm"

#: The paper's Table II rows, in its order; a variant's nnU-Net dataset id is base id + its index.
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", "nnU-Net baseline", ()),
    Variant("adunet_t2w", "adU-Net(T2W)", ("t2w",)),
    Variant("adunet_adc", "adU-Net(ADC)", ("adc",)),
    Variant("adunet_dwi", "adU-Net(DWI)", ("hbv",)),
    Variant("adunet_all", "adU-Net(all bpMRI)", ("t2w", "adc", "hbv")),
)}


def variant(name: str) -> Variant:
    """The variant called ``name``; a one-line error listing the known ones otherwise."""
    from adunet_lib.errors import AdunetError

    if name not in VARIANTS:
        raise AdunetError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[name]
