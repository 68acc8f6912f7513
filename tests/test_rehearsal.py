"""The CI-sized rehearsal of params/paper.yaml (#30): every paper-size network one step, nnU-Net's
3d_fullres planned on the real studies, one training step and a prediction on a real study's grid."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import yaml

from adunet_lib.data.image import read_geometry
from adunet_lib.runner.rehearsal import models_at_size, rehearsal_patch


@pytest.fixture(scope="module")
def rehearsal(repo, realdata, tmp_path_factory):
    """``adunet rehearse params/paper.yaml`` as a user runs it: its exit code, output and CSV rows."""
    out = tmp_path_factory.mktemp("rehearsal") / "rehearsal.csv"
    proc = subprocess.run([sys.executable, "-m", "adunet_lib.cli", "rehearse", "params/paper.yaml",
                           "--studies", str(realdata), "--batch-size", "1", "--predict-slices", "8", "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, encoding="utf-8", timeout=1200)
    rows = list(csv.DictReader(out.open(encoding="utf-8"))) if out.is_file() else []
    return proc, {row["item"]: row for row in rows}


def test_every_paper_size_network_trains_and_translates(rehearsal, repo):
    proc, rows = rehearsal
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    paper = yaml.safe_load((repo / "params" / "paper.yaml").read_text(encoding="utf-8"))
    side = paper["preprocessing"]["slice_size"]
    expected = {name for block in ("autoencoders", "diffusion", "fixed_point_gan") for name in paper[block]["models"]}
    assert expected <= set(rows), f"no rehearsal row for {expected - set(rows)}"
    for name in expected:
        assert rows[name]["input"].endswith(f"x1x{side}x{side}"), rows[name]  # one sequence per model, paper slices
        assert float(rows[name]["seconds_per_iteration"]) > 0 and float(rows[name]["translate_s_per_slice"]) > 0
    # the paper's widths, not the demo's: the FP-GAN with 64 filters and 6 residual blocks has tens of
    # millions of parameters, the DDPM with its 128-channel U-Net and classifier over a hundred million
    assert float(rows["fpgan"]["params_m"]) > 40
    assert float(rows["ddpm"]["params_m"]) > 100
    assert rows["fpgan"]["kinds"] == "critic/critic+G" and rows["ddpm"]["kinds"] == "+classifier/DDPM only"
    assert f"rehearsal passed: {len(rows)} row(s)" in proc.stdout


def test_nnunet_3d_fullres_step_and_prediction_on_real_geometry(rehearsal, realdata):
    proc, rows = rehearsal
    row = rows.get("nnunet_3d_fullres_adunet_all")
    assert row is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    planned = [int(v) for v in row["planned_patch"].split("x")]
    rehearsed = [int(v) for v in row["rehearsed_patch"].split("x")]
    assert len(planned) == 3, "3d_fullres plans a 3-D patch"
    assert all(r <= p for r, p in zip(rehearsed, planned)) and rehearsed != [1, 1, 1]
    # nnU-Net's own spacing for the real studies: about 3 mm between slices, about 0.5 mm in plane
    z, y, x = (float(v) for v in row["spacing_mm"].split("x"))
    assert 2.0 <= z <= 4.5 and 0.3 <= y <= 0.8 and 0.3 <= x <= 0.8
    assert "checkpoint_final.pth" in row["checkpoints"]
    # the held-out study (px0218, which has no masks) was predicted on its own T2W grid (its middle 8 slices)
    t2w = read_geometry(next((realdata / "images" / "px0218").glob("*_t2w.mha")))
    assert row["predicted_case"].startswith("px0218")
    assert row["predicted_grid"] == "x".join(map(str, (*t2w.size[:2], 8)))


def test_a_paper_size_that_no_network_takes_stops_naming_the_model(repo, tmp_path):
    params = yaml.safe_load((repo / "params" / "paper.yaml").read_text(encoding="utf-8"))
    params["preprocessing"]["slice_size"] = 120  # the autoencoders halve four times
    bad = tmp_path / "paper_120.yaml"
    bad.write_text(yaml.safe_dump(params), encoding="utf-8")
    out = tmp_path / "rehearsal.csv"
    proc = subprocess.run([sys.executable, "-m", "adunet_lib.cli", "rehearse", str(bad), "--no-nnunet", "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, encoding="utf-8", timeout=600)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if "dense_ae" in line]
    assert errors and "120" in errors[0], proc.stderr[-1000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists(), "a failed rehearsal leaves no table behind"


def test_rehearsal_patch_is_the_smallest_the_planned_network_takes():
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]]  # z pooled twice, x/y five times
    assert rehearsal_patch([16, 320, 320], strides) == [8, 64, 64]
    assert rehearsal_patch([4, 320, 320], strides) == [4, 64, 64]  # never above the plan
    assert rehearsal_patch([512, 512], [[1, 2], [1, 2]]) == [2, 8]  # an axis never pooled keeps 2 voxels


def test_models_at_size_reads_each_block_as_notebooks_02_to_04_train(repo):
    found = {m.name: m for m in models_at_size(repo / "params" / "demo.yaml")}
    demo = yaml.safe_load((repo / "params" / "demo.yaml").read_text(encoding="utf-8"))
    assert found["fpgan"].config["conv_dim"] == demo["fixed_point_gan"]["models"]["fpgan"]["conv_dim"]
    assert found["fpgan"].image_size == demo["preprocessing"]["slice_size"]
    assert found["fpgan"].channels == (1 if demo["fixed_point_gan"]["channels"] == "per_sequence" else 3)
