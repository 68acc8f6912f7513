"""The hostile corpus, run side: what a shared run folder, a careless params file or a shared
machine can do — each kind a one-line message (or the right silent behaviour), a non-zero exit and
nothing half-written. (The data side, ``adunet check`` on hostile datasets, is test_hostile_data.py.)
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from adunet_lib.cli import main
from adunet_lib.data import open_dataset
from adunet_lib.data.image import read_image, write_image
from adunet_lib.preprocessing.pipeline import PreprocessConfig, PreprocessedCase, preprocess_dataset
from conftest import REPO, make_image, smoke_params


def one_error_line(capsys) -> str:
    """The one line a command printed on stderr (progress bars aside)."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "%|" not in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


class Payload:
    """What an attacker pickles: unpickling it would create ``marker`` (it must never exist)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# -- 1. no code runs from a run folder ------------------------------------------------------------

PROPERTIES_SCRIPT = textwrap.dedent("""
    import sys
    from adunet_lib.segmentation.safe_load import UnsafeFileError, install
    install()  # what the nnU-Net worker does before anything else
    from nnunetv2.training.dataloading import nnunet_dataset  # the module that reads <case>.pkl
    print(sorted(nnunet_dataset.load_pickle(sys.argv[1])["spacing"]))
    try:
        nnunet_dataset.load_pickle(sys.argv[2])
    except UnsafeFileError as exc:
        print("refused:", exc)
""")


def test_a_crafted_nnunet_properties_pickle_is_refused_and_never_runs(tmp_path):
    good, evil, marker = tmp_path / "good.pkl", tmp_path / "evil.pkl", tmp_path / "PWNED"
    good.write_bytes(pickle.dumps({"spacing": [3.0, 0.5, 0.5], "class_locations": {1: np.zeros((2, 4), np.int64)},
                                   "shape_before_cropping": (3, 4, 5)}))
    evil.write_bytes(pickle.dumps({"spacing": [1.0], "x": Payload(marker)}))
    script = tmp_path / "load.py"
    script.write_text(PROPERTIES_SCRIPT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(good), str(evil)], capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "[0.5, 0.5, 3.0]"  # nnU-Net's own properties still load
    assert lines[1].startswith(f"refused: {evil}: refused to load: it asks for pathlib") and not marker.exists()


@pytest.mark.slow
def test_a_crafted_nnunet_checkpoint_in_a_shared_run_is_refused_and_never_runs(smoke_series, tmp_path, capsys):
    """``adunet predict`` loads nnU-Net's checkpoint through torch's weights-only unpickler: a replaced
    ``checkpoint_final.pth`` is one line naming it, exit 2, and its payload never runs."""
    import torch

    run, _, _ = smoke_series
    settings = json.loads((run / "nnunet" / "settings.json").read_text(encoding="utf-8"))
    checkpoint = next((run / "nnunet" / "results").glob(f"Dataset*_adunet_adunet_all/*/fold_{settings['folds'][0]}"
                                                        "/checkpoint_final.pth"))
    marker = tmp_path / "PWNED"
    case = next(c for c in open_dataset(run / "data" / "external").cases)
    zones = run / "zones" / f"{case.case_id}.nii.gz"
    saved = tmp_path / "saved.pth"
    shutil.copy2(checkpoint, saved)
    try:
        torch.save({"network_weights": Payload(marker), "trainer_name": "nnUNetTrainer"}, checkpoint)
        out = tmp_path / "out"
        code = main(["predict", *(str(case.images[s]) for s in ("t2w", "adc", "hbv")), "--zones", str(zones),
                     "--run", str(run), "--out", str(out)])
    finally:
        shutil.copy2(saved, checkpoint)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"adunet predict: error: {checkpoint}: refused to load: it asks for " in err[0]
    assert not marker.exists() and not out.exists()


# -- 2. no stale results -----------------------------------------------------------------------------

def _keep_stat(path: Path, change) -> None:
    """Rewrite ``path`` through ``change`` and give it back its size and modification time (as a
    correction copied with ``cp -p`` or ``rsync -t`` would)."""
    before = path.stat()
    image = read_image(path)
    path.unlink()
    write_image(change(image), path, compress=False)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("role", ["lesion", "zones", "adc"])
def test_a_corrected_input_with_the_old_time_stamp_is_preprocessed_again_and_said(cohort_copy, tmp_path, role):
    ds = open_dataset(cohort_copy)
    case = next(c for c in ds.cases if c.lesion is not None and read_image(c.lesion).array.any() and c.zones)
    path = Path(case.images["adc"] if role == "adc" else getattr(case, role))
    config = PreprocessConfig(slice_size=32)
    out = tmp_path / "pre"
    logged: list[str] = []
    preprocess_dataset([case], out, config, show_progress=False, log=logged.append)
    first = PreprocessedCase.load(out, case.case_id)

    def fix(image):
        a = image.array.copy()
        if role == "lesion":  # the radiologist removes the lesion's lower half
            z = np.nonzero(a.any(axis=(1, 2)))[0]
            a[z[: max(1, len(z) // 2)]] = 0
        elif role == "zones":  # PZ and TZ relabelled along one slice
            z = np.nonzero(a.any(axis=(1, 2)))[0][0]
            a[z][a[z] > 0] = 3 - a[z][a[z] > 0]
        else:
            a = (a * 1.5).astype(a.dtype)
        return image.with_array(a)

    _keep_stat(path, fix)
    preprocess_dataset([open_dataset(cohort_copy)[case.case_id]], out, config, show_progress=False, log=logged.append)
    again = PreprocessedCase.load(out, case.case_id)
    assert again.stamp != first.stamp
    assert len(logged) == 1 and f"case {case.case_id}:" in logged[0] and str(path) in logged[0]
    assert "changed since it was preprocessed: preprocessing it again" in logged[0]
    name = {"lesion": "lesion", "zones": "zones", "adc": "images"}[role]
    assert not np.array_equal(getattr(first.stack(), name), getattr(again.stack(), name))
    # and an untouched rerun redoes nothing, says nothing
    preprocess_dataset([open_dataset(cohort_copy)[case.case_id]], out, config, show_progress=False, log=logged.append)
    assert len(logged) == 1


# -- 3. outputs never land in the project, the run or the inputs ---------------------------------------

def test_a_study_named_only_by_its_folder_takes_the_folders_name():
    from adunet_lib.predict import study_id

    assert study_id("/data/prostate158/test/020/t2.nii.gz") == "020"
    assert study_id("/data/site/p7/T2W.mha") == "p7"
    assert study_id("/data/picai/10795/10795_1000811_t2w.mha") == "10795_1000811"
    assert study_id("/data/x/study9.nii.gz") == "study9"


@pytest.mark.slow
def test_predict_refuses_outputs_among_other_files(smoke_series, tmp_path, capsys):
    run, _, _ = smoke_series
    case = next(c for c in open_dataset(run / "data" / "external").cases)
    study = tmp_path / "studies" / case.case_id  # a study kept outside the run, as a user's is
    study.mkdir(parents=True)
    images = [str(shutil.copy2(case.images[s], study / f"{case.case_id}_{s}.nii.gz")) for s in ("t2w", "adc", "hbv")]
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x", encoding="utf-8")
    for out, why in ((run / "predictions" / "mine", "lies inside the run folder"),
                     (run.parent, "lies inside the run folder"),  # holds the run
                     (a_file, "is an existing file"),
                     (study / "out", "lies inside the input data"),
                     (study.parent, "lies inside the input data"),  # holds the study
                     (REPO / "notebooks" / "pred", "lies in the project's own notebooks/ folder")):
        before = sorted(p.name for p in out.parent.iterdir())
        assert main(["predict", *images, "--run", str(run), "--out", str(out)]) == 2
        err = one_error_line(capsys)
        assert f"--out {out} " in err and why in err, (out, err)
        assert sorted(p.name for p in out.parent.iterdir()) == before


# -- 5. every failure is one line ---------------------------------------------------------------------

def test_no_gpu_for_device_cuda_is_one_line(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["predict", "a.mha", "b.mha", "c.mha", "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    assert "--device cuda: no CUDA GPU is available here; use cpu" in one_error_line(capsys)
    params = tmp_path / "p.yaml"
    params.write_text(f"common:\n  run_dir: {tmp_path / 'run'}\n  figure_dir: {tmp_path / 'figs'}\n  device: cuda\n",
                      encoding="utf-8")
    assert main(["reproduce", str(params)]) == 2
    assert "common.device = 'cuda': no CUDA GPU is available here" in one_error_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "figs").exists()


def test_a_run_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only run folder (or one owned by someone else): refused at the first write — the run
    lock — before any notebook starts. (The test runs as root here, which may write anywhere, so the
    operating system's refusal is simulated for that folder.)"""
    run = tmp_path / "readonly_run"
    run.mkdir()
    real_open = os.open

    def deny(path, *args, **kwargs):
        if str(path).startswith(str(run)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    if os.geteuid() == 0:
        monkeypatch.setattr(os, "open", deny)
    else:
        run.chmod(stat.S_IRUSR | stat.S_IXUSR)
    params = smoke_params(tmp_path)
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    data["common"]["run_dir"] = str(run)
    params.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        assert main(["reproduce", str(params), "--quiet"]) == 2
    finally:
        run.chmod(0o755)
    assert f"{run}: the run folder is not writable (Permission denied)" in one_error_line(capsys)
    assert not any(run.iterdir())


def test_a_full_disk_is_one_line_and_leaves_no_half_written_cohort(tmp_path, capsys, monkeypatch):
    from adunet_lib.data import synthetic

    real, calls = synthetic.write_image, []

    def disk_full(image, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 4:
            raise OSError(28, "No space left on device", str(path))
        return real(image, path, *args, **kwargs)

    monkeypatch.setattr(synthetic, "write_image", disk_full)
    out = tmp_path / "cohort"
    assert main(["synth", str(out), "--cases", "3"]) == 1
    err = one_error_line(capsys)
    assert err.startswith("adunet synth: error: No space left on device: ") and str(out) in err
    assert not out.exists()


ITK_DISK_FULL = ("Exception thrown in SimpleITK ImageFileWriter_Execute: MetaImage: M_WriteElementData: "
                 "file stream is fail after write")


def test_a_disk_that_fills_inside_simpleitk_is_named_as_full_and_leaves_no_half_written_file(tmp_path, capsys,
                                                                                              monkeypatch):
    """SimpleITK does not raise an OSError: its RuntimeError carries ITK's own text; the user reads
    the same line as for any full disk, naming the file, and no half-written image remains."""
    import SimpleITK as sitk

    from adunet_lib import fileio

    real, written = sitk.WriteImage, []

    def fills_the_disk(image, name, *args, **kwargs):
        written.append(name)
        if len(written) > 4:
            Path(name).write_bytes(b"ObjectType = Image\n" + b"\0" * 100)  # what ITK had written when the disk filled
            monkeypatch.setattr(fileio, "free_bytes", lambda folder: 0)
            raise RuntimeError(ITK_DISK_FULL)
        return real(image, name, *args, **kwargs)

    monkeypatch.setattr(sitk, "WriteImage", fills_the_disk)
    out = tmp_path / "cohort"
    assert main(["synth", str(out), "--cases", "3"]) == 1
    err = one_error_line(capsys)
    assert err.startswith("adunet synth: error: No space left on device: ") and str(out) in err
    full = Path(err.split(": ", 3)[-1])
    # the file the cohort was writing, not SimpleITK's hidden temporary one
    assert full.is_relative_to(out) and full.name.endswith((".mha", ".nii.gz")) and not full.name.startswith(".")
    assert not out.exists()

    # into a folder that stays (a run folder): neither the image nor a temporary file is left behind
    image = make_image()
    with pytest.raises(OSError, match="No space left on device") as caught:
        write_image(image, tmp_path / "run" / "case_adc.mha")
    assert caught.value.filename == str(tmp_path / "run" / "case_adc.mha") and list((tmp_path / "run").iterdir()) == []


def test_a_simpleitk_error_with_room_on_the_disk_is_not_called_a_full_disk(tmp_path, monkeypatch):
    import SimpleITK as sitk

    from adunet_lib import fileio

    monkeypatch.setattr(fileio, "free_bytes", lambda folder: 10 << 30)
    monkeypatch.setattr(sitk, "WriteImage", lambda *a, **k: (_ for _ in ()).throw(RuntimeError(ITK_DISK_FULL)))
    image = make_image()
    with pytest.raises(RuntimeError, match="fail after write"):
        write_image(image, tmp_path / "case_adc.mha")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_run_is_one_line_and_the_rerun_resumes(tmp_path):
    """Ctrl-C reaches the whole process group (as from a terminal): the kernel and nnU-Net's worker
    stop too. One line, exit 130, no DeadKernelError traceback; the same command then finishes."""
    params = smoke_params(tmp_path)
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    data["preprocessing"].update(mask_source={"internal": "files", "external": "files"}, synth_without_masks=0)
    params.write_text(yaml.safe_dump(data), encoding="utf-8")
    cmd = [sys.executable, "-m", "adunet_lib.cli", "reproduce", str(params), "--to", "01", "--quiet"]
    # as from a terminal: SIGINT at its default, even when this suite runs as a background job (whose
    # children inherit SIGINT ignored, so a Ctrl-C would never reach the run)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run = Path(data["common"]["run_dir"])
    deadline = time.time() + 120
    while time.time() < deadline and not list((run / "data").glob("*/synth.json")):
        time.sleep(0.2)  # inside notebook 01: the first synthetic cohort is written
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "DeadKernelError" not in err
    assert lines[-1].startswith("adunet reproduce: error: interrupted in notebook 01_preprocessing") or \
        lines[-1].startswith("adunet reproduce: interrupted"), lines
    assert not (run / ".adunet.lock").exists()  # the lock went with the run
    record = json.loads((run / "reproduce.json").read_text(encoding="utf-8"))
    assert record["01_preprocessing"]["status"] == "interrupted"
    again = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((run / "reproduce.json").read_text(encoding="utf-8"))["01_preprocessing"]["status"] == "ok"


# -- 6. params are checked for sense before anything runs -------------------------------------------

SENSE = [
    ("preprocessing", "slice_size", 0, "preprocessing.slice_size = 0 must be at least 8"),
    ("preprocessing", "slice_size", 42, "autoencoders.models.dense_ae: image_size 42 must be divisible by 4"),
    ("preprocessing", "crop_margin_mm", -2.0, "preprocessing.crop_margin_mm = -2.0 must be ≥ 0"),
    ("preprocessing", "intensity_reference", "body",
     "preprocessing.intensity_reference = 'body' must be 'gland' or 'field_of_view'"),
    ("preprocessing", "n_folds", 1, "preprocessing.n_folds = 1 must be at least 2"),
    ("preprocessing", "n_folds", 13, "preprocessing.n_folds = 13 is more than the 12 synthetic internal cases"),
    ("preprocessing", "leak_free_maps", 1, "preprocessing.leak_free_maps = 1 must be 0 (off) or at least 2"),
    ("preprocessing", "mask_source", {"internal": "guess"}, "preprocessing.mask_source: internal: 'guess'"),
    ("autoencoders", "iterations", 0, "autoencoders.iterations = 0 must be at least 1"),
    ("diffusion", "checkpoint_every", 0, "diffusion.checkpoint_every = 0 must be at least 1"),
    ("fixed_point_gan", "models", {"fpgan": {"conv_dimm": 8}}, "fixed_point_gan.models.fpgan: "),
    ("fixed_point_gan", "models", {"fpgann": {}}, "fixed_point_gan.models.fpgann: unknown model"),
    ("anomaly_maps", "blur_kernel", 0, "anomaly_maps.blur_kernel = 0 must be at least 1 pixel"),
    ("segmentation", "folds", [2], "segmentation.folds = [2]: fold(s) [2] do not exist with preprocessing.n_folds = 2"),
    ("segmentation", "target_spacing", [3.0, 0.0, 1.0], "segmentation.target_spacing = [3.0, 0.0, 1.0] must be []"),
    ("segmentation", "variants", ["adunet_best"], "segmentation.variants: ['adunet_best']"),
    ("evaluation", "n_bootstrap", 0, "evaluation.n_bootstrap = 0 must be at least 1"),
    ("segmentation", "num_gpus", 0, "segmentation.num_gpus = 0 must be ≥ 1"),
    ("segmentation", "num_gpus", 2, "segmentation.num_gpus = 2 needs device: cuda (all visible GPUs), not 'cpu'"),
    ("common", "data_seed", -2, "common.data_seed = -2 must be ≥ 0 (or -1: the same as seed)"),
]


@pytest.mark.parametrize("block, key, value, message", SENSE, ids=[f"{b}.{k}={v}" for b, k, v, _ in SENSE])
def test_params_that_make_no_sense_are_refused_before_anything_runs(tmp_path, capsys, block, key, value, message):
    params = smoke_params(tmp_path)
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    data[block][key] = value
    params.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["reproduce", str(params)]) == 2
    err = one_error_line(capsys)
    assert message in err and str(params) in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "figures").exists()


def test_no_external_set_is_a_set_left_out_not_a_path(tmp_path):
    """``external_data: none`` used to become the folder "<project>/none" ("dataset not found");
    now the run has no external set (the smoke series finishes so: see the closing note of #14)."""
    from adunet_lib.runner.reproduce import plan

    params = smoke_params(tmp_path)
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    data["common"]["external_data"] = "none"
    params.write_text(yaml.safe_dump(data), encoding="utf-8")
    _, selected = plan(params)
    assert {values["external_data"] for _, values in selected} == {"none"}


def test_an_empty_params_file_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n", encoding="utf-8")
    assert main(["reproduce", str(empty)]) == 2
    assert f"{empty}: the params file is empty" in one_error_line(capsys)


def test_every_committed_params_file_makes_sense_here_or_names_its_gpu(capsys):
    """demo, smoke and bench pass the sense checks on any machine; paper.yaml asks for a GPU."""
    import torch

    from adunet_lib.errors import ParamsError
    from adunet_lib.runner.reproduce import plan

    for name in ("demo", "smoke", "bench"):
        plan(REPO / "params" / f"{name}.yaml")
    if torch.cuda.is_available():
        plan(REPO / "params" / "paper.yaml")
    else:
        with pytest.raises(ParamsError, match="common.device = 'cuda': no CUDA GPU"):
            plan(REPO / "params" / "paper.yaml")


@pytest.mark.slow
def test_a_valid_run_prints_no_warnings(smoke_series):
    """The shared smoke series: no notebook wrote a warning (progress bars aside) to stderr."""
    run, _, _ = smoke_series
    found = []
    for notebook in sorted((run / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            for output in cell.get("outputs", []):
                text = "".join(output.get("text", "")) if output.get("name") == "stderr" else ""
                # a finding about the data names its case (adunet check reports it too): not spurious
                found += [f"{notebook.name}: {ln}" for ln in text.replace("\r", "\n").splitlines()
                          if "warn" in ln.lower() and "Warning: case " not in ln]
    assert not found, found[:5]


# -- 8. shared machines -----------------------------------------------------------------------------------

def test_a_second_run_on_a_busy_run_folder_is_refused(tmp_path, capsys):
    from adunet_lib.runner.lock import run_lock

    params = smoke_params(tmp_path)
    run = tmp_path / "runs" / "smoke"
    with run_lock(run):  # this process is the first run, alive
        assert main(["reproduce", str(params), "--quiet"]) == 2
        err = one_error_line(capsys)
        assert f"{run} is in use by another run" in err and f"process {os.getpid()}" in err
        assert sorted(p.name for p in run.iterdir()) == [".adunet.lock"]  # the second wrote nothing
    assert not (run / ".adunet.lock").exists()


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_note(tmp_path):
    from adunet_lib.runner.lock import LOCK_NAME, run_lock

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a process id that no longer exists (a crashed run)
    run = tmp_path / "run"
    run.mkdir()
    import socket

    (run / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "start": "1",
                                             "since": "2026-11-28 10:00:00", "command": "adunet reproduce"}))
    notes: list[str] = []
    with run_lock(run, notes.append):
        held = json.loads((run / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid()
    assert notes == [f"note: {run / LOCK_NAME}: removing a stale lock (process {dead.pid} of 2026-11-28 10:00:00 is gone)"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_respect_the_users_umask(tmp_path, umask, mode):
    from adunet_lib.data.synthetic import synthesize_cohort

    old = os.umask(umask)
    try:
        out = synthesize_cohort(tmp_path / "c", cases=1, seed=0, show_progress=False)
    finally:
        os.umask(old)
    files = [p for p in Path(out).rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {mode}
