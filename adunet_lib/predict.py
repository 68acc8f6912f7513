"""``adunet predict``: csPCa detection for one new study with a finished run's models.

The study goes through the same steps as the run's cases — preprocessing with the run's settings,
the run's reconstruction model for the anomaly maps, the chosen nnU-Net variant (all its trained
folds) — and comes out as a PI-CAI detection map on the study's own T2W grid.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from adunet_lib.anomaly_maps.maps import case_maps
from adunet_lib.anomaly_models.inference import pseudo_healthy
from adunet_lib.data.case import Case, load_case
from adunet_lib.data.image import Image, read_image, write_image
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import read_json, write_json
from adunet_lib.preprocessing.pipeline import PreprocessConfig, preprocess_case
from adunet_lib.run_folder import VOLUME_SUFFIX, RunContext
from adunet_lib.segmentation import nnunet
from adunet_lib.segmentation.detection import write_detection
from adunet_lib.vocabulary import CROPPED, SEQUENCES, variant as variant_spec
from adunet_lib.zones.model import predict_study_zones


@dataclasses.dataclass(frozen=True)
class Prediction:
    case_id: str
    detection_map: Path
    case_score: float
    lesion_candidates: int
    maps: list[Path]
    zone_mask: Path | None = None  # the predicted zone mask, when none was given


def predict_zones(run_dir: str | Path, images: dict[str, str | Path], out_dir: str | Path, case_id: str | None = None,
                  device: str | None = None, log=print) -> tuple[Path, str]:
    """``adunet zones``: one study's PZ/TZ mask from the run's zone model, on the study's T2W grid.

    Args:
        images: ``{"t2w": …}`` plus ``adc``/``hbv`` when the zone model reads them.

    Returns:
        (the mask file ``<out_dir>/<case>_zones.nii.gz``, which model made it).
    """
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    ctx = RunContext(run_dir, out_dir, device=device or "cpu")
    given = {k: Path(v) for k, v in images.items() if v}
    case_id = case_id or given["t2w"].name.split(".")[0].removesuffix("_t2w")
    if any(p.resolve().parent == out_dir for p in given.values()):
        raise AdunetError(f"output folder {out_dir} holds the inputs; choose another so nothing is overwritten")
    loaded = load_case(Case(case_id=case_id, images=given, expected=given), sequences=tuple(given))
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{case_id}_zones.nii.gz"
    try:
        return target, predict_study_zones(ctx, loaded, target, log)
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed call leaves nothing behind, not even the folder it made
        raise


def predict_study(run_dir: str | Path, images: dict[str, str | Path], out_dir: str | Path, gland: str | Path | None = None,
                  zones: str | Path | None = None, variant: str = "adunet_all", case_id: str | None = None,
                  device: str | None = None, log=print) -> Prediction:
    """Detect csPCa in one study with the models of ``run_dir``.

    Args:
        run_dir: a run folder where notebooks 01–06 have finished (e.g. ``runs/demo``).
        images: ``{"t2w": …, "adc": …, "hbv": …}`` files.
        out_dir: where the detection map, anomaly maps and an overview figure go (created).
        gland, zones: a whole-gland or a zonal mask on the T2W grid; with neither, the run's zone
            model predicts the zones (written beside the detection map as ``<case>_zones.nii.gz``).
        variant: which nnU-Net model (``baseline``, ``adunet_t2w`` … ``adunet_all``).
    """
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    ctx = RunContext(run_dir, out_dir, device=device or "cpu")
    if not ctx.segmentation_record.is_file() or not ctx.preprocessing_record.is_file():
        raise AdunetError(f"{run_dir}: not a finished run (run notebooks 01–06 first)")
    settings = read_json(ctx.segmentation_record)
    if variant not in settings["variants"]:
        raise AdunetError(f"variant {variant!r} was not trained in {run_dir} (have {', '.join(settings['variants'])})")
    spec = variant_spec(variant)
    inputs = [Path(p).resolve() for p in [*images.values(), gland, zones] if p]
    case_id = case_id or Path(images["t2w"]).name.split(".")[0].removesuffix("_t2w")
    if any(p.parent == out_dir for p in inputs):
        raise AdunetError(f"output folder {out_dir} holds the inputs; choose another so nothing is overwritten")

    case = Case(case_id=case_id, images={k: Path(v) for k, v in images.items()}, gland=Path(gland) if gland else None,
                zones=Path(zones) if zones else None, expected={k: Path(v) for k, v in images.items()})
    if gland or zones:
        mask_note = f"given: {Path(gland or zones).resolve()}"
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        predicted = out_dir / f"{case_id}_zones.nii.gz"
        mask_note = predict_study_zones(ctx, load_case(case), predicted, log)
        log(f"{case_id}: zones {mask_note}: {predicted}")
        case = dataclasses.replace(case, zones=predicted)
    loaded = load_case(case, require_masks=True)
    config = PreprocessConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in read_json(ctx.preprocessing_record)["preprocess"].items()})
    pre = preprocess_case(loaded, config, modes=(CROPPED,))

    map_model = settings["map_model"]
    kernel = read_json(ctx.map_record(map_model))["kernel_size"]
    maps = case_maps(pre, pseudo_healthy(ctx, map_model, pre), kernel)
    map_files = [write_image(image, out_dir / f"{case_id}_{seq}_anomaly.mha") for seq, image in maps.items()]
    log(f"{case_id}: anomaly maps ({map_model}) written")

    _, dataset_name = ctx.nnunet_dataset(variant, settings["base_dataset_id"])
    mdir = ctx.nnunet_model_dir(dataset_name, settings["configuration"])
    if not mdir.is_dir():
        raise AdunetError(f"{mdir}: no trained nnU-Net for {variant} ({dataset_name})")
    on_t2w = {s: loaded.on_t2w(s) for s in SEQUENCES}
    channels = [on_t2w[s] if kind == "sequence" else maps[s] for kind, s in spec.channels()]
    work = out_dir / f".{case_id}_nnunet"  # nnU-Net's scratch space, gone whatever happens
    shutil.rmtree(work, ignore_errors=True)
    try:
        files = [str(write_image(Image(image.array.astype(np.float32), loaded.t2w.geometry),
                                 work / "input" / f"{case_id}_{k:04d}{VOLUME_SUFFIX}")) for k, image in enumerate(channels)]
        nnunet.call(ctx, [{"command": "predict", "model_dir": str(mdir), "folds": settings["folds"],
                           "inputs": {case_id: files}, "output_dir": str(work / "output"), "device": ctx.device,
                           "mirroring": settings["mirroring"]}], log, label=f"nnU-Net {variant}")
        det = write_detection(work / "output" / f"{case_id}.npz", loaded.t2w.geometry,
                              out_dir / f"{case_id}_detection_map.mha")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    from adunet_lib.report.figures import save_figure
    from adunet_lib.report.viewer import static_montage

    detection = read_image(det).array
    box = pre.box.slices()
    volumes = {s: on_t2w[s].array[box] for s in SEQUENCES}
    overlays = {"gland": pre.gland_in_box, "anomaly": maps["adc"].array[box], "detection": detection[box]}
    save_figure(static_montage(volumes, overlays, title=f"{case_id}: {variant}"), out_dir / f"{case_id}_overview.png")
    candidates = int(len(np.unique(detection[detection > 0])))
    result = Prediction(case_id, det, float(detection.max()), candidates, map_files,
                        None if gland or zones else case.zones)
    write_json(out_dir / f"{case_id}_prediction.json", dataclasses.asdict(result) | {
        "variant": variant, "run": str(run_dir), "zones": mask_note})
    return result
