"""The pretrained gland model (``mask_source: pretrained_gland``, ``--gland-model pretrained``) on real studies.

Run on demand (not a test; needs ``pip install -e ".[gland]"``)::

    python benchmarks/bench_pretrained_gland.py                     # the real studies in ../shared/realdata
    python benchmarks/bench_pretrained_gland.py --out figures/bench/pretrained_gland.txt

Every study (``images/<pid>/<pid>_<sid>_t2w.mha`` of a PI-CAI folder) goes through
:func:`adunet_lib.zones.pretrained.pretrained_gland` in a process of its own, so its peak memory (the
child's max RSS) belongs to that study alone. Printed per study: the gland's volume, seconds of the
model's call and of the whole process, peak memory, whether the mask's grid equals the T2W's, and the
Dice against picai_labels' whole gland (``whole_gland/AI/Bosma22b``) and against the union of the zonal
masks (``zonal_pz_tz/AI/HeviAI23``) where the study has them. ``--predict RUN`` adds ``adunet predict``
on every study without masks through the pretrained gland (RUN: a finished run, e.g. ``runs/demo``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "realdata" / "picai"
REFERENCES = {"whole_gland/AI/Bosma22b": "Dice Bosma22b", "zonal_pz_tz/AI/HeviAI23": "Dice HeviAI23 PZ∪TZ"}

# one study, in a child process: prints one JSON line
CHILD = r"""
import json, resource, sys, time
import numpy as np
from adunet_lib.data.image import read_image, resample_to
from adunet_lib.zones.masks import dice
from adunet_lib.zones.pretrained import pretrained_gland
t2w_path, labels, case_id = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
t2w = read_image(t2w_path)
result = pretrained_gland(t2w, case_id, t2w_path, log=lambda _: None)
out = {"case": case_id, "ml": result.ml, "model_s": result.seconds, "notes": list(result.notes),
       "grid_equal": result.mask.geometry == t2w.geometry}
for ref in json.loads(sys.argv[4]):
    path = f"{labels}/anatomical_delineations/{ref}/{case_id}.nii.gz"
    try:
        reference = read_image(path)
    except RuntimeError:
        continue
    if not reference.geometry.same_as(t2w.geometry):
        reference = resample_to(reference, t2w.geometry, "nearest")
    out[ref] = dice(result.mask.array > 0, reference.array > 0)
out["process_s"] = time.perf_counter() - start
out["peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
print("RESULT " + json.dumps(out))
"""


def studies(root: Path) -> list[tuple[str, Path]]:
    found = []
    for t2w in sorted((root / "images").glob("*/*_t2w.mha")):
        found.append((t2w.name[: -len("_t2w.mha")], t2w))
    return found


def run_one(case_id: str, t2w: Path, labels: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", CHILD, str(t2w), str(labels), case_id, json.dumps(list(REFERENCES))],
                          capture_output=True, text=True, env=env)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode or line is None:
        return {"case": case_id, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(line[len("RESULT "):])


def predict_one(run: Path, case_id: str, t2w: Path) -> str:
    images = [str(t2w.with_name(f"{case_id}_{s}.mha")) for s in ("t2w", "adc", "hbv")]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "adunet_lib.cli", "predict", *images, "--run", str(run),
                               "--out", tmp, "--gland-model", "pretrained"], capture_output=True, text=True,
                              cwd=REPO)
        seconds = time.perf_counter() - start
        if done.returncode:
            return f"{case_id}: adunet predict exit {done.returncode}: {done.stderr.strip().splitlines()[-1]}"
        record = json.loads((Path(tmp) / f"{case_id}_prediction.json").read_text(encoding="utf-8"))
        return (f"{case_id}: adunet predict (no masks, --gland-model pretrained) exit 0 in {seconds:.0f} s: "
                f"{Path(record['detection_map']).name}, gland_model {record['gland_model']}, "
                f"csPCa likelihood {record['case_score']:.3f}; zones: {record['zones']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="a PI-CAI folder (images/, picai_labels/)")
    parser.add_argument("--out", type=Path, help="also write the printout here")
    parser.add_argument("--predict", type=Path, help="a finished run: adunet predict on the studies without masks")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from adunet_lib.zones.pretrained import describe

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"{describe()}; onnxruntime {onnxruntime.__version__}, CPU, {torch.get_num_threads()} thread(s), "
             f"{os.cpu_count()} cores, load average {load:.1f} (a shared machine: timings vary)",
             f"{'case':<15} {'gland ml':>9} {'model s':>8} {'total s':>8} {'peak GB':>8} {'grid equal':>10} "
             + " ".join(f"{name:>20}" for name in REFERENCES.values())]
    print("\n".join(lines), flush=True)
    unmasked = []
    for case_id, t2w in studies(args.data):
        row = run_one(case_id, t2w, args.data / "picai_labels")
        if "error" in row:
            line = f"{case_id:<15} error: {row['error']}"
        else:
            dices = " ".join(f"{row[ref]:>20.2f}" if ref in row else f"{'(no mask)':>20}" for ref in REFERENCES)
            line = (f"{case_id:<15} {row['ml']:>9.1f} {row['model_s']:>8.1f} {row['process_s']:>8.1f} "
                    f"{row['peak_gb']:>8.2f} {str(row['grid_equal']):>10} {dices}")
            if row["notes"]:
                line += f"   (model's QC: {'; '.join(row['notes'])})"
            if not any(ref in row for ref in REFERENCES):
                unmasked.append((case_id, t2w))
        print(line, flush=True)
        lines.append(line)
    if args.predict:
        for case_id, t2w in unmasked:
            line = predict_one(args.predict.resolve(), case_id, t2w)
            print(line, flush=True)
            lines.append(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
