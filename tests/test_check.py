"""``adunet check`` on broken copies of a cohort: every problem named with its case and file."""

import numpy as np

from adunet_lib.cli import main
from adunet_lib.data import open_dataset
from adunet_lib.data.image import Geometry, Image, read_image, write_image


def _run(capsys, path, *extra):
    code = main(["check", str(path), "--quiet", *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def _first_case(cohort):
    pid_dir = sorted((cohort / "images").iterdir())[0]
    case_id = sorted(pid_dir.iterdir())[0].name.rsplit("_", 1)[0]
    return pid_dir, case_id


def test_clean_cohort_passes(capsys, synth_internal):
    code, text = _run(capsys, synth_internal)
    assert code == 0 and "ok" in text


def test_every_problem_is_listed_with_case_and_file(capsys, cohort_copy):
    pid_dir, case_id = _first_case(cohort_copy)
    # 1. missing sequence
    (pid_dir / f"{case_id}_hbv.mha").unlink()
    # 2. NaN voxels in ADC
    adc = read_image(pid_dir / f"{case_id}_adc.mha")
    arr = adc.array.astype(np.float32)
    arr[0, 0, :3] = np.nan
    write_image(adc.with_array(arr), pid_dir / f"{case_id}_adc.mha")
    # 3. label values out of range, 4. label on another grid (second case)
    lesion_path = open_dataset(cohort_copy)[case_id].lesion
    lesion = read_image(lesion_path)
    bad = lesion.array.copy()
    bad[0, 0, 0] = 9
    write_image(lesion.with_array(bad), lesion_path)
    other_pid = sorted((cohort_copy / "images").iterdir())[1]
    other_id = sorted(other_pid.iterdir())[0].name.rsplit("_", 1)[0]
    zones_path = open_dataset(cohort_copy)[other_id].zones
    zones = read_image(zones_path)
    g = zones.geometry
    smaller = Geometry((g.size[0], g.size[1] - 4, g.size[2]), g.spacing, g.origin, g.direction)
    write_image(Image(zones.array[:, :-4, :].copy(), smaller), zones_path)
    # 5. corrupt file (truncated)
    t2 = sorted((cohort_copy / "images").iterdir())[2]
    t2_file = sorted(t2.glob("*_t2w.mha"))[0]
    t2_file.write_bytes(t2_file.read_bytes()[:300])

    code, text = _run(capsys, cohort_copy)
    assert code != 0
    assert f"case {case_id}: {pid_dir / f'{case_id}_hbv.mha'}: missing sequence hbv" in text
    assert f"{case_id}_adc.mha: adc: 3 NaN/Inf voxels" in text
    assert "lesion label values outside 0..5: [9]" in text and str(lesion_path) in text
    assert f"case {other_id}: {zones_path}: zonal mask grid differs from the T2W grid (size" in text
    assert f"{t2_file}: t2w: corrupt or unreadable image" in text


def test_missing_mask_is_a_warning_unless_strict(capsys, realdata):
    code, text = _run(capsys, realdata)
    assert code == 0 and "px0218_0218" in text and "no gland mask" in text
    code, _ = _run(capsys, realdata, "--strict")
    assert code == 1


def test_unknown_folder_is_a_one_line_error(capsys, tmp_path):
    code, text = _run(capsys, tmp_path)
    assert code == 2 and "unknown dataset layout" in text and len(text.strip().splitlines()) == 1
