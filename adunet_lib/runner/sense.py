"""Params checked for sense, not only for type, before any notebook runs.

:func:`~adunet_lib.runner.params.validate` knows a key exists and has the declared type; this module
knows what the value must mean: sizes positive and fitting the networks, folds between 2 and the
number of cases, counts and margins not negative, names from the vocabulary, the device present.
Each problem is one :class:`ParamsError` line naming the file, the block and the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adunet_lib.errors import ParamsError

Rule = tuple[Callable[[Any], bool], str]

#: (block or ``*`` for any notebook, key) → (test, what the value must be). Blocks are the params
#: file's (``preprocessing`` …); ``*`` covers keys that several notebooks declare alike.
RULES: dict[tuple[str, str], Rule] = {
    ("*", "seed"): (lambda v: v >= 0, "must be ≥ 0"),
    ("*", "data_seed"): (lambda v: v >= -1, "must be ≥ 0 (or -1: the same as seed)"),
    ("preprocessing", "slice_size"): (lambda v: v >= 8, "must be at least 8 (pixels per side)"),
    ("preprocessing", "crop_margin_mm"): (lambda v: v >= 0, "must be ≥ 0"),
    ("preprocessing", "intensity_reference"): (lambda v: v in ("gland", "field_of_view"), "must be 'gland' or 'field_of_view'"),
    ("preprocessing", "n_folds"): (lambda v: v >= 2, "must be at least 2 (fold 0 is the validation split)"),
    ("preprocessing", "synth_internal_cases"): (lambda v: v >= 2, "must be at least 2"),
    ("preprocessing", "synth_external_cases"): (lambda v: v >= 1, "must be at least 1"),
    ("preprocessing", "anomaly_patients"): (lambda v: v >= 1, "must be at least 1"),
    ("preprocessing", "leak_free_maps"): (lambda v: v == 0 or v >= 2, "must be 0 (off) or at least 2 parts"),
    ("preprocessing", "synth_without_masks"): (lambda v: v >= 0, "must be ≥ 0 (0: every study has masks)"),
    ("preprocessing", "show_cases"): (lambda v: v >= 0, "must be ≥ 0"),
    ("preprocessing", "on_case_error"): (lambda v: v in ("fail", "skip"), "must be 'fail' or 'skip'"),
    ("autoencoders", "iterations"): (lambda v: v >= 1, "must be at least 1"),
    ("diffusion", "iterations"): (lambda v: v >= 1, "must be at least 1"),
    ("fixed_point_gan", "iterations"): (lambda v: v >= 1, "must be at least 1"),
    ("autoencoders", "batch_size"): (lambda v: v >= 1, "must be at least 1"),
    ("diffusion", "batch_size"): (lambda v: v >= 2, "must be at least 2 (half healthy, half not)"),
    ("fixed_point_gan", "batch_size"): (lambda v: v >= 1, "must be at least 1"),
    ("*", "checkpoint_every"): (lambda v: v >= 1, "must be at least 1"),
    ("*", "channels"): (lambda v: v in ("all", "per_sequence"), "must be 'all' or 'per_sequence'"),
    ("*", "modes"): (lambda v: bool(v) and set(v) <= {"cropped", "full"}, "must list 'cropped' and/or 'full'"),
    ("fixed_point_gan", "figure_slices"): (lambda v: v >= 0, "must be ≥ 0"),
    ("anomaly_maps", "blur_kernel"): (lambda v: v >= 1, "must be at least 1 pixel"),
    ("anomaly_maps", "fig4_patients"): (lambda v: v >= 0, "must be ≥ 0"),
    ("segmentation", "epochs"): (lambda v: v >= 0, "must be ≥ 0 (0: nnU-Net's 1000)"),
    ("segmentation", "iterations_per_epoch"): (lambda v: v >= 0, "must be ≥ 0 (0: nnU-Net's 250)"),
    ("segmentation", "val_iterations_per_epoch"): (lambda v: v >= 0, "must be ≥ 0 (0: nnU-Net's 50)"),
    ("segmentation", "num_gpus"): (lambda v: v >= 1, "must be ≥ 1"),
    ("segmentation", "batch_size"): (lambda v: v >= 0, "must be ≥ 0 (0: nnU-Net's planned batch size)"),
    ("segmentation", "base_dataset_id"): (lambda v: 1 <= v <= 995, "must be between 1 and 995 (ids id..id+4 < 1000)"),
    ("segmentation", "target_spacing"): (lambda v: v == [] or (len(v) == 3 and all(s > 0 for s in v)),
                                         "must be [] or three positive spacings [z, y, x] in mm"),
    ("segmentation", "folds"): (lambda v: bool(v) and all(isinstance(f, int) and f >= 0 for f in v),
                                "must list at least one fold number ≥ 0"),
    ("segmentation", "configuration"): (lambda v: v in ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"),
                                        "must be an nnU-Net configuration: 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres"),
    # (segmentation.stage.LOSSES, CHECKPOINTS, detection.LESION_THRESHOLDS: not imported, to keep this light)
    ("segmentation", "loss"): (lambda v: v in ("dice_ce", "focal_ce"),
                               "must be dice_ce (nnU-Net's) or focal_ce (PI-CAI's baseline)"),
    ("segmentation", "checkpoint"): (lambda v: v in ("final", "best"), "must be final or best"),
    ("segmentation", "lesion_threshold"): (lambda v: v in ("dynamic-fast", "dynamic"),
                                           "must be dynamic-fast or dynamic (report_guided_annotation)"),
    ("evaluation", "n_bootstrap"): (lambda v: v >= 1, "must be at least 1"),
}


def _where(params: Any, block: str, key: str) -> str:
    return f"{params.path}: {'common' if key in params.common else block}.{key}"


def check_sense(params: Any, notebooks: list[Any], injected: dict[str, dict[str, Any]]) -> None:
    """Check the values each notebook would get (``injected``: notebook name → values).

    Raises:
        ParamsError: the first value that makes no sense, naming file, block and key.
    """
    if not params.common and not params.blocks:
        raise ParamsError(f"{params.path}: the params file is empty; give at least a common block "
                          "(see params/demo.yaml)")
    from adunet_lib.runner.params import declared_parameters

    # what each notebook will run with: its declared defaults, then what the params file sets
    effective = {nb.name: {k: d.default for k, d in declared_parameters(nb.path).items()} | injected[nb.name]
                 for nb in notebooks}
    by_block = {nb.block: effective[nb.name] for nb in notebooks}
    for nb in notebooks:
        values = effective[nb.name]
        for (block, key), (test, need) in RULES.items():
            if block in ("*", nb.block) and key in values:
                try:
                    ok = test(values[key])
                except TypeError:
                    ok = False
                if not ok:
                    raise ParamsError(f"{_where(params, nb.block, key)} = {values[key]!r} {need}")
    pre = by_block.get("preprocessing", {})
    device = next(iter(effective.values())).get("device", "cpu")
    _check_device(params, device)
    _check_gpus(params, device, by_block.get("segmentation", {}).get("num_gpus", 1))
    _check_folds(params, pre, by_block.get("segmentation", {}))
    _check_choices(params, by_block)
    for block in ("autoencoders", "diffusion", "fixed_point_gan"):
        if block in by_block:
            _check_models(params, block, by_block[block], int(pre.get("slice_size", 64)))


def device_problem(device: str) -> str:
    """Why ``device`` cannot be used on this machine ("" when it can): cpu, cuda, cuda:N or mps."""
    if device == "cpu":
        return ""
    if device != "mps" and device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        return "must be cpu, cuda, cuda:N or mps"
    import torch

    if device == "mps":
        return "" if torch.backends.mps.is_available() else "this machine has no Apple GPU (mps); use cpu"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "no CUDA GPU is available here; use cpu"
    if ":" in device and int(device[5:]) >= count:
        return f"this machine has {count} CUDA GPU(s) (cuda:0…cuda:{count - 1})"
    return ""


def _check_device(params: Any, device: str) -> None:
    problem = device_problem(device)
    if problem:
        raise ParamsError(f"{_where(params, '*', 'device')} = {device!r}: {problem}")


def _check_gpus(params: Any, device: str, num_gpus: int) -> None:
    """nnU-Net's multi-GPU training needs that many CUDA GPUs (and device: cuda, not one cuda:N)."""
    if num_gpus <= 1:
        return
    if device != "cuda":
        raise ParamsError(f"{_where(params, 'segmentation', 'num_gpus')} = {num_gpus} needs device: cuda "
                          f"(all visible GPUs), not {device!r}")
    import torch

    count = torch.cuda.device_count()
    if num_gpus > count:
        raise ParamsError(f"{_where(params, 'segmentation', 'num_gpus')} = {num_gpus}: this machine has {count} "
                          "CUDA GPU(s)")


def _check_folds(params: Any, pre: dict[str, Any], seg: dict[str, Any]) -> None:
    n_folds = pre.get("n_folds")
    if n_folds is None:
        return
    if pre.get("internal_data") == "synthetic" and n_folds > pre.get("synth_internal_cases", n_folds):
        raise ParamsError(f"{_where(params, 'preprocessing', 'n_folds')} = {n_folds} is more than the "
                          f"{pre['synth_internal_cases']} synthetic internal cases")
    if not pre.get("splits"):
        outside = [f for f in seg.get("folds", []) if f >= n_folds]
        if outside:
            raise ParamsError(f"{_where(params, 'segmentation', 'folds')} = {seg['folds']}: fold(s) {outside} do not "
                              f"exist with preprocessing.n_folds = {n_folds} (folds 0…{n_folds - 1})")


def _check_choices(params: Any, by_block: dict[str, dict[str, Any]]) -> None:
    from adunet_lib.vocabulary import ANOMALY_COHORTS, MAP_NORMALISATIONS, VARIANTS
    from adunet_lib.zones.stage import MASK_SOURCES, PRETRAINED_SOURCES

    pre, seg = by_block.get("preprocessing", {}), by_block.get("segmentation", {})
    if "anomaly_cohort" in pre and pre["anomaly_cohort"] not in ANOMALY_COHORTS:
        raise ParamsError(f"{_where(params, 'preprocessing', 'anomaly_cohort')} = {pre['anomaly_cohort']!r} must be one "
                          f"of {', '.join(ANOMALY_COHORTS)}")
    for set_name, source in (pre.get("mask_source") or {}).items():
        if set_name not in ("internal", "external") or source not in MASK_SOURCES:
            raise ParamsError(f"{_where(params, 'preprocessing', 'mask_source')}: {set_name}: {source!r}; sets are "
                              f"internal/external, sources {', '.join(MASK_SOURCES)}")
    pretrained_sets = [s for s, source in (pre.get("mask_source") or {}).items() if source in PRETRAINED_SOURCES]
    if pretrained_sets:
        from adunet_lib.zones import pretrained

        if not pretrained.available():
            raise ParamsError(f"{_where(params, 'preprocessing', 'mask_source')}: {', '.join(pretrained_sets)}: "
                              f"{pretrained.MISSING}")
    if "zone_model" in pre:
        from adunet_lib.zones.model import ZoneSettings

        zones = ZoneSettings.from_params(pre["zone_model"])
        if zones.n_folds < 2 or not zones.folds or any(not 0 <= f < zones.n_folds for f in zones.folds):
            raise ParamsError(f"{_where(params, 'preprocessing', 'zone_model')}: folds {list(zones.folds)} must be "
                              f"between 0 and n_folds - 1 = {zones.n_folds - 1} (n_folds ≥ 2)")
    if "map_normalisation" in seg and seg["map_normalisation"] not in MAP_NORMALISATIONS:
        raise ParamsError(f"{_where(params, 'segmentation', 'map_normalisation')} = {seg['map_normalisation']!r} must "
                          f"be one of {', '.join(MAP_NORMALISATIONS)}")
    unknown = [v for v in seg.get("variants", []) if v not in VARIANTS]
    if unknown or ("variants" in seg and not seg["variants"]):
        raise ParamsError(f"{_where(params, 'segmentation', 'variants')}: {unknown or 'none'}; variants are "
                          f"{', '.join(VARIANTS)}")
    _check_oracle(params, seg)


def _check_oracle(params: Any, seg: dict[str, Any]) -> None:
    """The oracle's maps come from the phantoms' lesion-free twins: every set must be synthetic."""
    from adunet_lib.vocabulary import ORACLE, ORACLE_VARIANTS

    wanted = [v for v in seg.get("variants", []) if v in ORACLE_VARIANTS]
    key = "variants" if wanted else "map_model"
    if not wanted and seg.get("map_model") != ORACLE:
        return
    real = [f"{k} = {seg[k]!r}" for k in ("internal_data", "external_data")
            if seg.get(k, "synthetic") not in ("synthetic", "none", "")]
    if real:
        raise ParamsError(f"{_where(params, 'segmentation', key)}: {', '.join(wanted) or ORACLE} needs the oracle's "
                          f"maps, which only synthetic cohorts have (their lesion-free twins); {', '.join(real)}")


def _check_models(params: Any, block: str, values: dict[str, Any], slice_size: int) -> None:
    """Build each configured network on PyTorch's ``meta`` device (no memory, no compute): a
    hyperparameter it does not know or a slice size it cannot take is found before anything runs."""
    from adunet_lib.anomaly_models import registry
    from adunet_lib.errors import AdunetError

    in_channels = 3 if values.get("channels", "all") == "all" else 1
    for name, hyper in (values.get("models") or {}).items():
        where = f"{params.path}: {block}.models.{name}"
        if name not in registry.available():
            raise ParamsError(f"{where}: unknown model (registered: {', '.join(registry.available())})")
        try:
            registry.create(name, in_channels, slice_size, hyper or None, device="meta")
        except (ValueError, TypeError, AdunetError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ParamsError(f"{where}: {reason} (preprocessing.slice_size = {slice_size})") from None

