"""Params checked for sense, not only for type, before any notebook runs.

:func:`~adunet_lib.runner.params.validate` knows a key exists and has the declared type; this module
knows what the value must mean: sizes positive and fitting the networks, folds between 2 and the
number of cases, counts and margins not negative, names from the vocabulary, the device present.
Each problem is one :class:`ParamsError` line naming the file, the block and the key.

A rule about one parameter lives next to it, in its notebook's dataclass (``param(..., check=...,
need=...)``, :func:`adunet_lib.parameters.sense_problem`); here are the checks that need several
blocks, the machine, or the model registry.
"""

from __future__ import annotations

from typing import Any

from adunet_lib.errors import ParamsError


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
    from adunet_lib.anomaly_models.params import TrainingParams
    from adunet_lib.parameters import sense_problem
    from adunet_lib.runner.params import params_class

    classes = {nb.name: params_class(nb) for nb in notebooks}
    # what each notebook will run with: its dataclass's defaults, then what the params file sets
    effective = {nb.name: classes[nb.name].defaults() | injected[nb.name] for nb in notebooks}
    by_block = {nb.block: effective[nb.name] for nb in notebooks}
    for nb in notebooks:
        values = effective[nb.name]
        problem = sense_problem(classes[nb.name], values)
        if problem:
            key, need = problem
            raise ParamsError(f"{_where(params, nb.block, key)} = {values[key]!r} {need}")
    pre = by_block.get("preprocessing", {})
    device = next(iter(effective.values())).get("device", "cpu")
    _check_device(params, device)
    _check_gpus(params, device, by_block.get("segmentation", {}).get("num_gpus", 1))
    _check_folds(params, pre, by_block.get("segmentation", {}))
    _check_choices(params, by_block)
    for nb in notebooks:
        if issubclass(classes[nb.name], TrainingParams):
            _check_models(params, nb.block, by_block[nb.block], int(pre.get("slice_size", 64)))


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
    from adunet_lib.vocabulary import VARIANTS
    from adunet_lib.zones.stage import MASK_SOURCES, PRETRAINED_SOURCES

    pre, seg = by_block.get("preprocessing", {}), by_block.get("segmentation", {})
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
    if "synth_external_layout" in pre:
        from adunet_lib.data.layouts import synthetic_layouts

        if pre["synth_external_layout"] not in synthetic_layouts():
            raise ParamsError(f"{_where(params, 'preprocessing', 'synth_external_layout')} = "
                              f"{pre['synth_external_layout']!r} must be a layout with a synthetic writer: "
                              f"{', '.join(synthetic_layouts())}")
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
    import torch

    from adunet_lib.anomaly_models import registry
    from adunet_lib.errors import AdunetError

    in_channels = 3 if values.get("channels", "all") == "all" else 1
    for name, hyper in (values.get("models") or {}).items():
        where = f"{params.path}: {block}.models.{name}"
        if name not in registry.available():
            raise ParamsError(f"{where}: unknown model (registered: {', '.join(registry.available())})")
        try:
            with torch.device("meta"):  # built there from the start: no weights initialised on the CPU
                registry.create(name, in_channels, slice_size, hyper or None, device="meta")
        except (ValueError, TypeError, AdunetError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ParamsError(f"{where}: {reason} (preprocessing.slice_size = {slice_size})") from None

