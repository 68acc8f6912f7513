"""How long ``adunet predict`` takes on real-size studies, and how much memory it needs.

Run on demand (not a test)::

    python benchmarks/bench_predict.py                          # runs/demo's models on ../shared/realdata
    python benchmarks/bench_predict.py --run /tmp/fresh/runs/demo --studies DIR [DIR ...]
    python benchmarks/bench_predict.py --paper                  # + the paper settings' networks (minutes)

**End to end.** For every study folder (``*_t2w``, ``*_adc``, ``*_hbv`` images; default: the real
ProstateX studies in ``../shared/realdata/picai/images``) it runs ``adunet predict`` with the run's
models as a separate process — with the study's zonal mask from picai_labels where it has one, else
without (the run's zone model predicts the zones first; a run whose zone model gives an implausible
gland is refused, and the row says so) — and samples the memory (PSS: shared pages counted once) of
that process and of every process it starts (nnU-Net's worker) every 20 ms or so: the peak of their
sum is what the machine must have free. A run's networks are the run's own —
``runs/demo`` has the demo's narrow networks at 64² and an nnU-Net planned on the phantoms.

**Paper settings** (``--paper``): the two parts whose size the paper's settings change, each in a
process of its own on the first study, with untrained weights (the cost of a network does not depend
on its weights):

* the FP-GAN at the paper's widths (64 filters, 6 residual blocks) translating every slice of the study
  at 128² (per sequence: 3 one-channel generators, as ``channels: per_sequence``) — the anomaly maps;
* nnU-Net 3d_fullres as nnU-Net plans it for these real studies with adU-Net(all)'s 6 channels
  (T2W, ADC, DWI + 3 maps): the studies are written as an nnU-Net dataset in a temporary folder, nnU-Net
  extracts the fingerprint and plans, and its predictor runs the planned network (1 fold) over the
  first study. ``--mirroring`` adds the 8 mirrored passes (paper: on) — 8× the time, the same memory.

Prints seconds and peak memory per study or part; the limit the issue sets is 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "realdata" / "picai" / "images"
SEQUENCES = ("t2w", "adc", "hbv")
LIMIT_GB = 2.0


def study_files(folder: Path) -> dict[str, Path]:
    found = {s: sorted(folder.glob(f"*_{s}.*")) for s in SEQUENCES}
    missing = [s for s, files in found.items() if not files]
    if missing:
        sys.exit(f"bench_predict: {folder}: no {', '.join(missing)} image (want *_t2w, *_adc, *_hbv)")
    return {s: files[0] for s, files in found.items()}


def zonal_mask(folder: Path, t2w: Path) -> Path | None:
    """The study's PZ/TZ mask in a picai_labels clone beside ``images/`` (any source), if there is one."""
    case = t2w.name.split("_t2w")[0]
    labels = folder.parent.parent / "picai_labels" / "anatomical_delineations" / "zonal_pz_tz"
    found = sorted(labels.glob(f"**/{case}.nii.gz")) if labels.is_dir() else []
    return found[0] if found else None


def run_measured(command: list[str], env: dict[str, str] | None = None,
                 check: bool = True) -> tuple[float, float, str]:
    """Run ``command``; return (seconds, peak memory in GB of it and its children together, output).

    Memory is the proportional set size (PSS) summed over the processes: every page counted once,
    shared ones split between the processes that map them — torch's libraries (mapped by the main
    process and nnU-Net's worker alike) and the copy-on-write pages of forked workers (nnU-Net forks
    for its fingerprint) occupy the machine's memory once. Summed resident sets count them once per
    process: 7.1 GB instead of 2.8 for the paper-size nnU-Net part. Reading PSS takes some
    milliseconds, so a spike shorter than the sampling interval can be missed.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                            text=True, encoding="utf-8", errors="replace")
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                total = 0
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_full_info().pss
                    except psutil.Error:
                        pass
                peak[0] = max(peak[0], total)
            except psutil.Error:
                pass
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    if proc.returncode and check:
        sys.exit(f"bench_predict: {' '.join(command[:4])} … failed (exit {proc.returncode}):\n{output[-3000:]}")
    return seconds, peak[0] / 1e9, output


def image_size(path: Path) -> str:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return "×".join(str(n) for n in reader.GetSize())


def end_to_end(run: Path, studies: list[Path], device: str) -> None:
    print(f"\n== adunet predict with {run} (variant adunet_all; the study's zonal mask from picai_labels "
          f"when it has one, else the run's zone model predicts the zones)")
    print(f"{'study':<16} {'T2W voxels':>14} {'mask':>10} {'seconds':>8} {'peak GB':>8}")
    for folder in studies:
        files = study_files(folder)
        zones = zonal_mask(folder, files["t2w"])
        with tempfile.TemporaryDirectory() as out:
            seconds, peak, output = run_measured(
                [sys.executable, "-m", "adunet_lib", "predict", *map(str, files.values()), "--run", str(run),
                 "--out", out, "--device", device, *(["--zones", str(zones)] if zones else [])], check=False)
        refused = next((line for line in output.splitlines() if line.startswith("adunet predict: error")), "")
        print(f"{folder.name:<16} {image_size(files['t2w']):>14} {'given' if zones else 'predicted':>10} "
              f"{seconds:>8.1f} {peak:>8.2f}{'' if peak <= LIMIT_GB else '  > ' + str(LIMIT_GB) + ' GB'}"
              f"{'  (refused: ' + refused.split('error: ', 1)[-1] + ')' if refused else ''}", flush=True)


# -- paper-settings parts, each run as `bench_predict.py --part NAME ...` in a process of its own ------------

def part_maps(t2w: Path, device: str) -> None:
    import SimpleITK as sitk
    import torch

    from adunet_lib.anomaly_models import create

    depth = sitk.ReadImage(str(t2w)).GetDepth()
    slices = torch.rand(depth, 1, 128, 128)
    start = time.perf_counter()
    for _ in SEQUENCES:  # one one-channel model per sequence, loaded one after the other
        model = create("fpgan", 1, 128, {"conv_dim": 64, "n_res_blocks": 6, "d_layers": 6}, device=device)
        model.reconstruct(slices)
        del model
    print(f"RESULT {json.dumps({'slices': depth, 'seconds': time.perf_counter() - start})}")


#: channel names (nnU-Net normalisation schemes) of the datasets this benchmark plans, by channel count:
#: 6 = adU-Net(all) (T2W, ADC, DWI + 3 maps), 3 = the baseline, 1 = the zone model (T2W)
CHANNEL_NAMES = {6: ["T2W", "CT", "HBV", "noNorm", "noNorm", "noNorm"], 3: ["T2W", "CT", "HBV"], 1: ["T2W"]}


def plan_nnunet(studies: list[Path], work: Path, channels: int = 6, labels: int = 2, dataset_id: int = 990,
                name: str = "BenchPredict") -> tuple[Any, Any, dict, list[list[str]]]:
    """Write ``studies`` as an nnU-Net dataset of ``channels`` channels (1, 3 or 6, see ``CHANNEL_NAMES``;
    channels past T2W/ADC/DWI repeat them: their values do not change the cost) in ``work`` and let nnU-Net
    extract the fingerprint and plan it. Returns (PlansManager, the 3d_fullres configuration, dataset.json,
    each study's input files). nnU-Net reads its folders from the environment at its first import: every
    call in one process must use the same ``work``."""
    import numpy as np
    import SimpleITK as sitk

    raw, pre, res = work / "raw", work / "preprocessed", work / "results"
    for p in (raw, pre, res):
        p.mkdir(parents=True, exist_ok=True)
    os.environ.update(nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre), nnUNet_results=str(res))
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiment_dataset
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from adunet_lib.segmentation._worker import _fingerprint_extractor

    dataset = raw / f"Dataset{dataset_id:03d}_{name}"
    (dataset / "imagesTr").mkdir(parents=True)
    (dataset / "labelsTr").mkdir()
    inputs = []
    for folder in studies:
        files = study_files(folder)
        t2w = sitk.ReadImage(str(files["t2w"]), sitk.sitkFloat32)
        on_grid = [t2w] + [sitk.Resample(sitk.ReadImage(str(files[s]), sitk.sitkFloat32), t2w) for s in ("adc", "hbv")]
        case = folder.name
        names = []
        for k in range(channels):
            names.append(str(dataset / "imagesTr" / f"{case}_{k:04d}.nii.gz"))
            sitk.WriteImage(on_grid[k % 3], names[-1])
        # a box in the middle as foreground: the fingerprint needs foreground voxels for its intensity statistics
        mask = np.zeros(sitk.GetArrayViewFromImage(t2w).shape, np.uint8)
        mask[tuple(slice(n * 3 // 8, max(n * 5 // 8, n * 3 // 8 + 1)) for n in mask.shape)] = labels - 1
        label = sitk.GetImageFromArray(mask)
        label.CopyInformation(t2w)
        sitk.WriteImage(label, str(dataset / "labelsTr" / f"{case}.nii.gz"))
        inputs.append(names)
    modality = {str(k): name for k, name in enumerate(CHANNEL_NAMES[channels])}
    label_names = {"background": 0, **{f"label{k}": k for k in range(1, labels)}}
    (dataset / "dataset.json").write_text(json.dumps({
        "channel_names": modality, "labels": label_names, "numTraining": len(studies), "file_ending": ".nii.gz"}))
    extract_fingerprint_dataset(dataset_id, _fingerprint_extractor(), num_processes=1, clean=True, verbose=False,
                                show_progress_bar=False)
    plan_experiment_dataset(dataset_id)
    plans = PlansManager(json.loads((pre / dataset.name / "nnUNetPlans.json").read_text()))
    return plans, plans.get_configuration("3d_fullres"), json.loads((dataset / "dataset.json").read_text()), inputs


def part_nnunet(studies: list[Path], work: Path, device: str, mirroring: bool) -> None:
    """Write ``studies`` as a 6-channel nnU-Net dataset, plan it, and run the planned 3d_fullres network on the first."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    plans, config, dataset_json, inputs = plan_nnunet(studies, work)
    network = get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                     config.network_arch_init_kwargs_req_import, 6, 2, deep_supervision=False)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                perform_everything_on_device=device != "cpu", device=torch.device(device),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans, config, [network.state_dict()], dataset_json, "nnUNetTrainer",
                                    (0, 1, 2) if mirroring else None)
    out = work / "out"
    out.mkdir()
    start = time.perf_counter()
    predictor.predict_from_files_sequential([inputs[0]], [str(out / studies[0].name)], save_probabilities=True,
                                            overwrite=True)
    print(f"RESULT {json.dumps({'seconds': time.perf_counter() - start, 'patch': config.patch_size, 'spacing': config.spacing})}")


def paper(studies: list[Path], device: str, mirroring: bool) -> None:
    first = studies[0]
    me = [sys.executable, str(Path(__file__).resolve())]
    print(f"\n== paper settings, on {first.name} (T2W {image_size(study_files(first)['t2w'])}); untrained weights")
    seconds, peak, out = run_measured([*me, "--part", "maps", "--device", device, "--studies", str(first)])
    got = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    print(f"anomaly maps: 3 FP-GAN generators (64 filters, 6 residual blocks), {got['slices']} slices at 128²: "
          f"{got['seconds']:.1f} s (process {seconds:.1f} s with imports), peak {peak:.2f} GB", flush=True)
    with tempfile.TemporaryDirectory() as work:
        seconds, peak, out = run_measured([*me, "--part", "nnunet", "--device", device, "--work", work,
                                           "--studies", *map(str, studies), *(["--mirroring"] if mirroring else [])])
    got = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    print(f"nnU-Net 3d_fullres as planned for these studies (patch {'×'.join(map(str, got['patch']))} at "
          f"{'×'.join(f'{s:.2f}' for s in got['spacing'])} mm, 6 channels, 1 fold, mirroring "
          f"{'on' if mirroring else 'off: ×8 with it'}): prediction {got['seconds']:.1f} s; planning + prediction "
          f"process {seconds:.1f} s, peak {peak:.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO / "runs" / "demo"), help="a finished run folder (default runs/demo)")
    parser.add_argument("--studies", nargs="+", type=Path, default=None,
                        help=f"study folders (default: every folder in {SHARED})")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paper", action="store_true", help="also time the paper settings' networks (minutes)")
    parser.add_argument("--only-paper", action="store_true", help="only the paper-settings parts")
    parser.add_argument("--mirroring", action="store_true", help="nnU-Net's 8 mirrored passes in the paper part")
    parser.add_argument("--part", choices=["maps", "nnunet"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    studies = args.studies or sorted(p for p in SHARED.iterdir() if p.is_dir())
    if args.part == "maps":
        return part_maps(study_files(studies[0])["t2w"], args.device)
    if args.part == "nnunet":
        return part_nnunet(studies, args.work, args.device, args.mirroring)
    import torch

    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU thread(s), "
          f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 1e9:.0f} GB memory")
    if not args.only_paper:
        run = Path(args.run)
        if not (run / "nnunet" / "settings.json").is_file():  # what notebook 06 leaves (RunContext.segmentation_record)
            sys.exit(f"bench_predict: {run} is not a finished run folder; make one with "
                     f"`adunet reproduce params/demo.yaml` or give --run")
        end_to_end(run.resolve(), studies, args.device)
    if args.paper or args.only_paper:
        paper(studies, args.device, args.mirroring)


if __name__ == "__main__":
    main()
