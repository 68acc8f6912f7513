"""The seam with nnU-Net (``adunet_lib/nnunet_seam.py``): typed worker requests, one owner of
nnU-Net's file names, and names that are the ones nnU-Net itself looks for."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from conftest import REPO

LIB = REPO / "adunet_lib"
SEAM = LIB / "nnunet_seam.py"

#: nnU-Net's raw-data and results names: spelled in the seam, nowhere else in the library
RAW_NAMES = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "_0000", "nnUNetTrainer__", "nnUNetPlans")


def _requests():
    from adunet_lib.nnunet_seam import PlanRequest, PredictRequest, PreprocessRequest, TrainRequest

    return [
        PlanRequest(dataset_id=501, num_processes=2, verify=False, target_spacing=(3.0, 0.5, 0.5)),
        PlanRequest(dataset_id=7, num_processes=1),
        PreprocessRequest(dataset_id=501, configurations=("2d",), num_processes=2, target_spacing=(3, 1, 1)),
        TrainRequest(dataset_id=501, configuration="2d", fold=1, device="cpu", seed=42, epochs=2,
                     iterations_per_epoch=3, val_iterations_per_epoch=1, batch_size=2, num_gpus=1, loss="focal_ce"),
        PredictRequest(model_dir="/m", folds=(0, 1), inputs={"c1": ("/x/c1_0000.mha", "/x/c1_0001.mha")},
                       output_dir="/o", device="cpu", mirroring=False, save_probabilities=False, checkpoint="best"),
    ]


@pytest.mark.parametrize("request_", _requests(), ids=lambda r: r.command)
def test_a_request_round_trips_through_json(request_):
    from adunet_lib.nnunet_seam import request_from_json

    data = request_.to_json()
    assert data["command"] == request_.command
    back = request_from_json(json.loads(json.dumps(data)))
    assert back == request_ and type(back) is type(request_)
    assert back.to_json() == data


def test_numbers_keep_their_json_form_and_lists_become_tuples():
    """What the worker records (PLANNED's target_spacing) must read as it did before requests were typed."""
    from adunet_lib.nnunet_seam import PreprocessRequest, PredictRequest

    pre = PreprocessRequest(dataset_id=1, configurations=["2d"], num_processes=1, target_spacing=[3, 0.5, 0.5])
    assert pre.configurations == ("2d",) and json.dumps(pre.to_json()["target_spacing"]) == "[3, 0.5, 0.5]"
    req = PredictRequest(model_dir="m", folds=[0], inputs={"a": ["f"]}, output_dir="o", device="cpu", mirroring=True)
    assert req.inputs == {"a": ("f",)} and req.done_file("a") == "a.npz"


@pytest.mark.parametrize("bad, says", [
    ({"command": "fit", "dataset_id": 1}, "unknown nnU-Net command 'fit'"),
    ({"command": "train", "dataset_id": 1, "configuration": "2d"}, "train request: missing field(s) fold, device"),
    ({**_requests()[0].to_json(), "num_procs": 2}, "plan request: unknown field(s) num_procs"),
    ({**_requests()[3].to_json(), "fold": "1"}, "train request: fold must be int, not '1'"),
    ({**_requests()[4].to_json(), "mirroring": 1}, "predict request: mirroring must be bool, not 1"),
    ("predict", "unknown nnU-Net command None"),
])
def test_the_worker_refuses_a_malformed_request_with_one_line(tmp_path, bad, says):
    steps = tmp_path / "steps.json"
    good = {**_requests()[1].to_json(), "env": {}}
    steps.write_text(json.dumps([good, bad]), encoding="utf-8")  # nothing runs, not even the good first step
    done = subprocess.run([sys.executable, "-m", "adunet_lib.segmentation._worker", str(steps)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, lines)
    assert lines[0].startswith("bad nnU-Net request: ") and says in lines[0], lines


def test_a_request_is_checked_where_it_is_built():
    from adunet_lib.nnunet_seam import RequestError, TrainRequest

    with pytest.raises(RequestError, match="train request: seed must be int"):
        TrainRequest(dataset_id=1, configuration="2d", fold=0, device="cpu", seed="1", epochs=1,
                     iterations_per_epoch=1, val_iterations_per_epoch=1)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def _seam_offences(source: str, where: str) -> list[str]:
    """nnU-Net names and hand-made worker requests in ``source`` (code, not docstrings or comments)."""
    from adunet_lib.nnunet_seam import REQUESTS, _hints

    fields = {name for cls in REQUESTS.values() for name in _hints(cls)} - {"device", "fold", "folds", "seed"}
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [f"{line}: {name!r} (use adunet_lib.nnunet_seam)" for name in RAW_NAMES if name in node.value]
        elif isinstance(node, ast.FormattedValue) and node.format_spec is not None \
                and "04d" in ast.unparse(node.format_spec):
            found.append(f"{line}: a {{k:04d}} channel number (use nnunet_seam.channel_file)")
        elif isinstance(node, ast.Dict):
            keys = {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
            command = keys.get("command")
            if command is not None and ((isinstance(command, ast.Constant) and command.value in REQUESTS)
                                        or fields & set(keys)):
                found.append(f"{line}: a hand-written nnU-Net request (use the nnunet_seam request classes)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" \
                and any(kw.arg == "command" for kw in node.keywords):
            found.append(f"{line}: a hand-written nnU-Net request (use the nnunet_seam request classes)")
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "command":
            found.append(f"{line}: a request read as a dict (use request_from_json and its fields)")
    return sorted(found, key=lambda f: int(f.split(":")[1]))


def test_the_check_below_catches_what_it_should():
    planted = '''
def f(case, k, mdir):
    """Docstrings may name imagesTr."""
    a = folder / "imagesTr" / f"{case}_{k:04d}.mha"
    b = {"command": "predict", "model_dir": mdir}
    c = step["command"]
    d = {"pid": 1, "command": shell_line()}  # a lock record: not a request
'''
    found = _seam_offences(planted, "x.py")
    assert sorted(f.split(":")[1] for f in found) == ["4", "4", "5", "6"], found


def test_nnunet_names_and_requests_have_one_owner():
    offenders = []
    for path in sorted(LIB.rglob("*.py")):
        if path != SEAM:
            offenders += _seam_offences(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not offenders, "\n".join(offenders)


def test_the_seams_names_are_the_ones_nnunet_looks_for(tmp_path):
    from nnunetv2.utilities.file_path_utilities import convert_identifier_to_trainer_plans_config
    from nnunetv2.utilities.utils import create_paths_fn, get_identifiers_from_splitted_dataset_folder

    from adunet_lib.fileio import read_json
    from adunet_lib.nnunet_seam import (DATASET_JSON, IMAGES_TR, LABELS_TR, NNUNET_PLANS, NNUNET_TRAINER, channel_file,
                                        channel_files, label_file, trainer_folder, write_dataset_json)

    raw = tmp_path / "Dataset501_adunet_x"
    cases = ["10000_1000000", "p_2"]
    for case in cases:
        for path in channel_files(raw / IMAGES_TR, case, 3):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
        (raw / LABELS_TR).mkdir(exist_ok=True)
        (raw / LABELS_TR / label_file(case)).write_bytes(b"")
    write_dataset_json(raw, {"0": "T2W", "1": "ADC", "2": "HBV"}, {"background": 0, "lesion": 1}, 2, "test")
    dataset_json = read_json(raw / DATASET_JSON)
    assert dataset_json["name"] == "adunet_x" and list(dataset_json) == [
        "channel_names", "labels", "numTraining", "file_ending", "name", "description"]

    # how nnU-Net finds a raw dataset's cases and their channels (nnunetv2.utilities.utils)
    ending = dataset_json["file_ending"]
    images = raw / IMAGES_TR
    identifiers = list(get_identifiers_from_splitted_dataset_folder(str(images), ending))
    assert identifiers == cases
    files = sorted(p.name for p in images.iterdir())
    for case in cases:
        assert create_paths_fn(str(images), files, ending, case) == [str(images / channel_file(case, k)) for k in range(3)]
        assert label_file(case) == case + ending  # nnU-Net: join(folder, 'labelsTr', identifier + file_ending)

    assert trainer_folder("2d") == "nnUNetTrainer__nnUNetPlans__2d"
    assert convert_identifier_to_trainer_plans_config(trainer_folder("3d_fullres")) == [
        NNUNET_TRAINER, NNUNET_PLANS, "3d_fullres"]


def test_a_prediction_writes_the_files_the_seam_names():
    """nnU-Net's export writes ``<output>.npz`` and ``<output><file_ending>``; the seam waits for those."""
    import inspect

    from nnunetv2.inference import export_prediction

    from adunet_lib.nnunet_seam import FILE_ENDING, PROBABILITIES_ENDING, label_file, probabilities_file

    source = inspect.getsource(export_prediction.export_prediction_from_logits)
    assert f"output_file_truncated + '{PROBABILITIES_ENDING}'" in source
    assert "output_file_truncated + dataset_json_dict_or_file['file_ending']" in source
    assert (probabilities_file("c"), label_file("c")) == ("c.npz", f"c{FILE_ENDING}")
