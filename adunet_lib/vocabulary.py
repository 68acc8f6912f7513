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
#: Pooled out-of-fold: every trained fold's held-out cases, each predicted by its own fold's model.
OOF = "oof"
#: The evaluated sets, and how tables name them.
EVALUATED_SPLITS = {VAL: "validation", OOF: "pooled out-of-fold", TEST: "external test"}
#: What each evaluated set means (Table II and summary.md say it).
EVALUATED_MEANING = {
    VAL: "the internal cases held out in fold 0 (whole patients), predicted by the nnU-Net of fold 0, "
         "which never saw them",
    OOF: "the held-out cases of every trained fold pooled, each predicted by its own fold's nnU-Net "
         "(PI-CAI's cross-validation practice); shown when more than one fold is trained",
    TEST: "the external cases, predicted by the ensemble of every trained fold",
}

#: Slice labels of the slice table (``slices.csv``) and their integer codes for the models.
HEALTHY, LESION, UNKNOWN = "healthy", "lesion", "unknown"
LABEL_CODES = {HEALTHY: 0, LESION: 1, UNKNOWN: -1}

#: Which internal cases train the reconstruction models (notebook 01's ``anomaly_cohort``).
ANOMALY_COHORTS = {
    "training_split": "every internal training-split case (healthy-only models use the csPCa-negative ones)",
    "paper": "a seeded random subset of `anomaly_patients` training-split patients without csPCa and without a visible lesion (PI-RADS ≥ 3 or a lesion mask; the paper's "
             "'100 randomly chosen patients without visible abnormality'); models that also need lesion slices "
             "(FP-GAN, the diffusion classifier) add the lesion slices of the training split's csPCa-positive cases",
}

#: The oracle "model" of phantom runs: G(x) = the study's lesion-free twin, which the synthetic generator
#: renders (never real data). Its maps are the headroom: what perfect pseudo-healthy images would give.
ORACLE = "oracle"
ORACLE_DISPLAY = "Oracle (lesion-free twin)"

#: Preprocessing modes: gland-cropped and masked (the paper's final setup) or the full field of view.
CROPPED, FULL = "cropped", "full"
MODES: tuple[str, str] = (CROPPED, FULL)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One compared nnU-Net model: the three sequences plus anomaly maps of ``maps`` as extra channels.

    Its channel layout is the single source for ``dataset.json``, the raw-data export and
    ``adunet predict``.

    Example:
        >>> VARIANTS["adunet_adc"].channel_names()
        {'0': 'T2W', '1': 'CT', '2': 'HBV', '3': 'noNorm'}
        >>> VARIANTS["adunet_adc"].channels()
        [('sequence', 't2w'), ('sequence', 'adc'), ('sequence', 'hbv'), ('map', 'adc')]
    """

    name: str
    display: str
    maps: tuple[str, ...]
    #: its nnU-Net dataset id is the run's base id + this offset: fixed per variant, so adding a variant
    #: never renumbers another's dataset (trained models stay where they are)
    dataset_offset: int = 0
    #: whose maps this variant always takes (None: the run's ``segmentation.map_model``)
    map_model: str | None = None

    def maps_from(self, run_map_model: str) -> str:
        """The model whose anomaly maps fill this variant's map channels."""
        return self.map_model or run_map_model

    def channels(self) -> list[tuple[str, str]]:
        """``(kind, sequence)`` per nnU-Net channel, in channel order."""
        return [("sequence", s) for s in SEQUENCES] + [("map", s) for s in self.maps]

    def channel_names(self, map_channel: str = "noNorm") -> dict[str, str]:
        """``dataset.json``'s ``channel_names``: nnU-Net picks each channel's normalisation by name
        (``map_channel``: the name, hence the normalisation, of the anomaly-map channels)."""
        return {str(i): (SEQUENCE_CHANNEL_NAMES[s] if kind == "sequence" else map_channel)
                for i, (kind, s) in enumerate(self.channels())}


#: nnU-Net picks a normalisation per input channel from its *name*, and adunet names them as the
#: PI-CAI baseline (picai_prep) does: T2W and HBV get nnU-Net's per-case z-score; ADC is named
#: "CT", so nnU-Net normalises it over the whole dataset (clipped to the 0.5–99.5 percentiles of
#: foreground voxels, then z-scored with their mean and spread): ADC values are physical
#: (mm²/s × 10⁶), and one scale for all cases keeps them comparable.
SEQUENCE_CHANNEL_NAMES = {"t2w": "T2W", "adc": "CT", "hbv": "HBV"}
#: Anomaly maps, by default "noNorm" (``segmentation.map_normalisation``): a map is already on a scale
#: shared by all cases (a difference of [0, 1] normalised intensities, 0 outside the gland); a
#: per-case z-score would blow a healthy case's faint residual up to look like a lesion.
MAP_CHANNEL_NAME = "noNorm"
#: The names nnU-Net understands for a map channel (its normalisation schemes).
MAP_NORMALISATIONS = {"noNorm": "none", "zscore": "per-case z-score", "CT": "dataset-wide, as CT",
                      "rescale_to_0_1": "per-case min-max"}

#: The paper's Table II rows, in its order, then adunet's oracle row (phantoms only: the maps of the
#: lesion-free twin, the headroom every variant reads against). A variant's nnU-Net dataset id is base id
#: + its own ``dataset_offset``: a new variant takes an unused offset, wherever it is listed.
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", "nnU-Net baseline", (), dataset_offset=0),
    Variant("adunet_t2w", "adU-Net(T2W)", ("t2w",), dataset_offset=1),
    Variant("adunet_adc", "adU-Net(ADC)", ("adc",), dataset_offset=2),
    Variant("adunet_dwi", "adU-Net(DWI)", ("hbv",), dataset_offset=3),
    Variant("adunet_all", "adU-Net(all bpMRI)", ("t2w", "adc", "hbv"), dataset_offset=4),
    Variant("adunet_all_oracle", "adU-Net(all), oracle maps", ("t2w", "adc", "hbv"), dataset_offset=5,
            map_model=ORACLE),
)}
if len({v.dataset_offset for v in VARIANTS.values()}) != len(VARIANTS):  # pragma: no cover - a developer's slip
    raise RuntimeError("two variants share an nnU-Net dataset offset")
#: Variants that need the phantoms' twins (no real data set has them).
ORACLE_VARIANTS = tuple(v.name for v in VARIANTS.values() if v.map_model == ORACLE)


def table_variants(variants: list[str], oracle_row: bool, data_sources: tuple[str, ...]) -> list[str]:
    """The variants notebook 06 trains: ``variants``, then — with ``oracle_row`` and only when every set is a
    phantom cohort (``data_sources``: internal_data, external_data) — the oracle row, the headroom."""
    rows = list(variants)
    phantoms = all(str(s) in ("synthetic", "none", "") for s in data_sources)
    if oracle_row and phantoms:
        rows += [v for v in ORACLE_VARIANTS if v not in rows]
    return rows


def variant(name: str) -> Variant:
    """The variant called ``name``; a one-line error listing the known ones otherwise."""
    from adunet_lib.errors import AdunetError

    if name not in VARIANTS:
        raise AdunetError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[name]
