"""``adunet predict``: csPCa detection for one new study with a finished run's models.

The study goes through the same steps as the run's cases — preprocessing with the run's settings,
the run's reconstruction model for the anomaly maps, the chosen nnU-Net variant (all its trained
folds) — and comes out as a PI-CAI detection map on the study's own T2W grid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from adunet_lib.anomaly_maps.maps import VIEWER_SEQUENCE, map_makers, model_maps, overlay_labels
from adunet_lib.anomaly_models.data import map_parts
from adunet_lib.data.case import Case, load_case
from adunet_lib.data.image import Image, read_image, write_image
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import read_json, write_json
from adunet_lib.nnunet_seam import PredictRequest, channel_file, probabilities_file
from adunet_lib.preprocessing.pipeline import PreprocessConfig, preprocess_case
from adunet_lib.run_folder import RunContext, why_unsafe_output
from adunet_lib.segmentation import nnunet
from adunet_lib.segmentation.detection import write_detection
from adunet_lib.vocabulary import CROPPED, ORACLE, SEQUENCES, variant as variant_spec
from adunet_lib.zones.model import predict_study_mask


@dataclasses.dataclass(frozen=True)
class Prediction:
    case_id: str
    detection_map: Path
    case_score: float
    lesion_candidates: int
    maps: list[Path]
    zone_mask: Path | None = None  # the predicted zone (or pretrained gland) mask, when none was given
    gland_model: str = "given"  # which model made the crop mask: given, run (its zone model), pretrained


#: File names that say which sequence, not which study (Prostate158's ``t2.nii.gz``, scanner exports):
#: a study named so takes its folder's name, so two studies never share output names.
GENERIC_NAMES = frozenset({"t2", "t2w", "t2_tse", "t2w_tse", "t2_tra", "t2w_tra", "t2_ax", "image", "img"})
#: Which study each case id of an output folder was made from (two studies never share one name).
CLAIMS = ".adunet_outputs.json"


def study_id(t2w: str | Path) -> str:
    """The name of a study from its T2W file: ``10795_1000811_t2w.mha`` → ``10795_1000811``;
    ``001/t2.nii.gz`` → ``001`` (the folder, when the file name only names the sequence)."""
    path = Path(t2w)
    stem = re.sub(r"(\.nii\.gz|\.nii|\.mha|\.mhd|\.nrrd)$", "", path.name, flags=re.IGNORECASE)
    name = re.sub(r"[_-]t2w?$", "", stem, flags=re.IGNORECASE)
    return path.resolve().parent.name if not name or stem.lower() in GENERIC_NAMES else name


@contextlib.contextmanager
def output_folder(run_dir: Path, out_dir: Path, inputs: dict[str, Path], case_id: str) -> Iterator[Path]:
    """Check ``--out`` and yield a hidden staging folder inside it; on success every file moves into
    ``out_dir``, on failure nothing is left (not even ``out_dir`` when this call made it).

    Refused with one line: an ``--out`` that is a file, lies in the run folder (or holds it), in the
    project, in or around the inputs' folders, or already holds outputs of another study of this name.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise AdunetError(f"--out {out_dir} is an existing file; give a folder (created if missing)")
    why = why_unsafe_output(out_dir, tuple(p.resolve().parent for p in inputs.values()))
    if not why and (out_dir == run_dir or run_dir in out_dir.parents or out_dir in run_dir.parents):
        why = f"lies inside the run folder {run_dir} or holds it"
    if why:
        raise AdunetError(f"--out {out_dir} {why}; outputs would land among files that are not theirs — "
                          f"choose a folder of its own")
    claims_file = out_dir / CLAIMS
    claims = read_json(claims_file) if claims_file.is_file() else {}
    t2w = str(inputs["t2w"].resolve())
    if claims.get(case_id, t2w) != t2w:
        raise AdunetError(f"--out {out_dir} already holds outputs of study {case_id} made from {claims[case_id]}, "
                          f"not {t2w}; pass --case-id or another --out so neither is overwritten")
    created = not out_dir.exists()
    stage = out_dir / f".{case_id}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
        for produced in sorted(stage.iterdir()):
            if produced.is_file():
                os.replace(produced, out_dir / produced.name)
        write_json(claims_file, claims | {case_id: t2w})
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()


def predict_zones(run_dir: str | Path, images: dict[str, str | Path], out_dir: str | Path, case_id: str | None = None,
                  device: str | None = None, gland_model: str = "auto", log=print) -> tuple[Path, str]:
    """``adunet zones``: one study's PZ/TZ mask from the run's zone model (``<case>_zones.nii.gz``), or
    its whole-gland mask from the pretrained gland model (``<case>_gland.nii.gz``), on its T2W grid.

    Args:
        images: ``{"t2w": …}`` plus ``adc``/``hbv`` when the zone model reads them.
        gland_model: ``auto``, ``run`` or ``pretrained`` (:func:`~adunet_lib.zones.model.choose_gland_model`).

    Returns:
        (the mask file in ``out_dir``, which model made it).
    """
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    ctx = RunContext(run_dir, out_dir, device=device or "cpu")
    given = {k: Path(v) for k, v in images.items() if v}
    case_id = case_id or study_id(given["t2w"])
    with output_folder(run_dir, out_dir, given, case_id) as stage:
        loaded = load_case(Case(case_id=case_id, images=given, expected=given), sequences=tuple(given))
        made, _, _, note = predict_study_mask(ctx, loaded, stage, gland_model, log)
    return out_dir / made.name, note


def predict_study(run_dir: str | Path, images: dict[str, str | Path], out_dir: str | Path, gland: str | Path | None = None,
                  zones: str | Path | None = None, variant: str = "adunet_all", case_id: str | None = None,
                  device: str | None = None, gland_model: str = "auto", log=print) -> Prediction:
    """Detect csPCa in one study with the models of ``run_dir``.

    Args:
        run_dir: a run folder where notebooks 01–06 have finished (e.g. ``runs/demo``).
        images: ``{"t2w": …, "adc": …, "hbv": …}`` files.
        out_dir: where the detection map, anomaly maps and an overview figure go (created).
        gland, zones: a whole-gland or a zonal mask on the T2W grid; with neither, the run's zone
            model predicts the zones (written beside the detection map as ``<case>_zones.nii.gz``) or
            the pretrained gland model the gland (``<case>_gland.nii.gz``), as ``gland_model`` says.
        gland_model: ``auto``, ``run`` or ``pretrained`` (:func:`~adunet_lib.zones.model.choose_gland_model`).
        variant: which nnU-Net model (``baseline``, ``adunet_t2w`` … ``adunet_all``).
    """
    run_dir, out_dir = Path(run_dir).resolve(), Path(out_dir).resolve()
    ctx = RunContext(run_dir, out_dir, device=device or "cpu")
    if not ctx.segmentation_record.is_file() or not ctx.preprocessing_record.is_file():
        raise AdunetError(f"{run_dir}: not a finished run (run notebooks 01–06 first)")
    settings = read_json(ctx.segmentation_record)
    if variant not in settings["variants"]:
        raise AdunetError(f"variant {variant!r} was not trained in {run_dir} (have {', '.join(settings['variants'])})")
    if variant_spec(variant).maps_from(settings["map_model"]) == ORACLE:
        raise AdunetError(f"variant {variant!r} takes the oracle's maps (a phantom's lesion-free twin), which a new "
                          "study does not have; choose a variant with a trained model's maps, e.g. adunet_all")
    given = {k: Path(v) for k, v in images.items()}
    case_id = case_id or study_id(given["t2w"])
    masks = {k: Path(v) for k, v in (("gland", gland), ("zones", zones)) if v}
    with output_folder(run_dir, out_dir, given | masks, case_id) as stage:
        result, mask_note = _predict(ctx, settings, given, masks, variant, case_id, stage, gland_model, log)
        write_json(stage / f"{case_id}_prediction.json", dataclasses.asdict(result) | {
            "variant": variant, "run": str(run_dir), "zones": mask_note,
            "inputs": {k: str(v.resolve()) for k, v in (given | masks).items()}})
    moved = lambda p: None if p is None else out_dir / Path(p).name  # noqa: E731  (staged → final)
    return dataclasses.replace(result, detection_map=moved(result.detection_map),
                               maps=[moved(m) for m in result.maps], zone_mask=moved(result.zone_mask))


def _predict(ctx: RunContext, settings: dict, given: dict[str, Path], masks: dict[str, Path], variant: str,
             case_id: str, stage: Path, gland_model: str, log) -> tuple[Prediction, str]:
    """The work of :func:`predict_study`, every file written into ``stage``."""
    spec = variant_spec(variant)
    case = Case(case_id=case_id, images=given, gland=masks.get("gland"), zones=masks.get("zones"), expected=given)
    used = "given"
    if masks:
        mask_note = f"given: {next(iter(masks.values())).resolve()}"
    else:
        predicted, kind, used, mask_note = predict_study_mask(ctx, load_case(case), stage, gland_model, log)
        log(f"{case_id}: {kind} {mask_note}")
        case = dataclasses.replace(case, **{kind: predicted})
    loaded = load_case(case, require_masks=True)
    config = PreprocessConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in read_json(ctx.preprocessing_record)["preprocess"].items()})
    pre = preprocess_case(loaded, config, modes=(CROPPED,))

    map_model = spec.maps_from(settings["map_model"])
    record = read_json(ctx.map_record(map_model))
    # the run's rule for a case outside its training split (leak-free maps: the part models' mean map)
    run_parts = map_parts(ctx.tables()[0]) if record.get("held_out_maps") else []
    maps, _ = model_maps(ctx, map_model, pre, record["kernel_size"],
                         map_makers(map_model, None, run_parts, record.get("held_out_maps") or "full"))
    map_files = [write_image(image, stage / f"{case_id}_{seq}_anomaly.mha") for seq, image in maps.items()]
    log(f"{case_id}: anomaly maps ({map_model}) written")

    _, dataset_name = ctx.nnunet_dataset(variant, settings["base_dataset_id"])
    mdir = ctx.nnunet_model_dir(dataset_name, settings["configuration"])
    if not mdir.is_dir():
        raise AdunetError(f"{mdir}: no trained nnU-Net for {variant} ({dataset_name})")
    on_t2w = {s: loaded.on_t2w(s) for s in SEQUENCES}
    channels = [on_t2w[s] if kind == "sequence" else maps[s] for kind, s in spec.channels()]
    work = stage / "scratch"  # nnU-Net's inputs and outputs, gone with the staging folder
    files = [str(write_image(Image(image.array.astype(np.float32), loaded.t2w.geometry),
                             work / "input" / channel_file(case_id, k))) for k, image in enumerate(channels)]
    nnunet.call(ctx, [PredictRequest(model_dir=str(mdir), folds=tuple(settings["folds"]), inputs={case_id: tuple(files)},
                                     output_dir=str(work / "output"), device=ctx.device, mirroring=settings["mirroring"],
                                     checkpoint=settings.get("checkpoint", "final"))],
                log, label=f"nnU-Net {variant}", scratch=work)
    det = write_detection(work / "output" / probabilities_file(case_id), loaded.t2w.geometry,
                          stage / f"{case_id}_detection_map.mha",
                          threshold=settings.get("lesion_threshold", "dynamic-fast"))

    from adunet_lib.report.figures import save_figure
    from adunet_lib.report.viewer import static_montage

    detection = read_image(det).array
    box = pre.box.slices()
    volumes = {s: on_t2w[s].array[box] for s in SEQUENCES}
    overlays = {"gland": pre.gland_in_box, "anomaly": maps[VIEWER_SEQUENCE].array[box], "detection": detection[box]}
    labels = overlay_labels(map_model) | {"detection": variant_spec(variant).display}
    save_figure(static_montage(volumes, overlays, title=f"{case_id}: {variant}", labels=labels),
                stage / f"{case_id}_overview.png")
    candidates = int(len(np.unique(detection[detection > 0])))
    made = None if masks else (case.zones or case.gland)
    result = Prediction(case_id, det, float(detection.max()), candidates, map_files, made, used)
    return result, mask_note
