"""``adunet plan PARAMS [--gpu h100|a100|h200|cpu] [--gpus N]``: what the series will cost before it runs.

For every job that ``adunet submit`` would start (:func:`adunet_lib.runner.submit.job_graph`, the same
graph) it estimates iterations, hours, peak memory and disk written, from a cost source measured at
the params' sizes (``figures/paper-rehearsal/cost_per_iteration.csv``, written by
``benchmarks/bench_plan_costs.py``: FLOPs per training iteration and per translated slice, CPU seconds,
peak memory, parameter counts, the machine's own matmul rate), then schedules the graph on N GPUs.

* ``--gpu cpu``: hours are the CPU seconds measured on the machine that wrote the cost file ("measured");
  where a row was not timed there (nnU-Net prediction, the zone model's and baseline's networks) its
  FLOPs are divided by the rate the timed nnU-Net iteration reached there ("extrapolated").
* ``--gpu h100|a100|h200``: hours = FLOPs ÷ (the device's dense peak × :data:`GPU_EFFICIENCY`) — always
  "extrapolated": no GPU measured these costs. nnU-Net trains with AMP (bf16 peak); a reconstruction
  model with ``mixed_precision`` on uses the bf16 peak, one without it the TF32 peak (cuDNN's default for
  fp32 convolutions).
* Data-parallel training (torchrun over N GPUs) is assumed to scale ideally (hours ÷ N); nnU-Net folds
  each take ``segmentation.num_gpus`` GPUs and run side by side.
* The cohort's size comes from the params where they say it (synthetic cohorts); for real data from
  :data:`COHORT` (an assumption, printed).

The schedule: jobs start in graph order as soon as what they wait for is done and enough of the N GPUs
are free (what ``adunet submit --executor slurm`` gets from a cluster with N free GPUs); the critical
path is the chain of jobs that ends last.
"""

from __future__ import annotations

import csv
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from adunet_lib.errors import AdunetError, ParamsError

COST_FILE = Path("figures") / "paper-rehearsal" / "cost_per_iteration.csv"


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    bf16: float  # dense peak, FLOP/s (no sparsity)
    tf32: float
    fp32: float


#: Vendor dense peaks (datasheets; no structured sparsity). The H200 has the H100's compute (more, faster memory).
DEVICES = {
    "h100": Device("NVIDIA H100 SXM", bf16=989e12, tf32=495e12, fp32=67e12),
    "a100": Device("NVIDIA A100 SXM", bf16=312e12, tf32=156e12, fp32=19.5e12),
    "h200": Device("NVIDIA H200 SXM", bf16=989e12, tf32=495e12, fp32=67e12),
}
GPU_CHOICES = (*DEVICES, "cpu")

#: ASSUMPTION, not measured here (no GPU has been lent to this project): the share of a GPU's dense peak
#: (bf16 with AMP, TF32 for fp32 convolutions) that convolutional networks of these sizes reach in
#: training and inference. 35 % is a common figure for well-fed convnets with AMP; small batches (the
#: DDPM's 10, split over 8 GPUs) and data loading (nnU-Net's augmentation on the CPU) can make it lower.
#: Replace it with benchmarks/gpu_check.py's measurement when a GPU is available.
GPU_EFFICIENCY = 0.35

#: ASSUMPTIONS about real cohorts (the params name a folder, not a size): studies per data set, by a
#: word in its path, and T2W slices per study (the real PROSTATEx studies here have 19–20 at 3 mm).
COHORT = {"picai": 1500, "prostate158": 158}
DEFAULT_STUDIES = 1500
SLICES_PER_STUDY = 20
#: ASSUMPTION: CPU seconds to read, resample, crop and write one study in notebook 01 (not measured at scale).
PREPROCESS_S_PER_STUDY = 10.0
#: nnU-Net's defaults where the params say 0
NNUNET_EPOCHS, NNUNET_ITERATIONS, NNUNET_VAL_ITERATIONS = 1000, 250, 50
#: a validation iteration is a forward pass: about a third of a training iteration's FLOPs
FORWARD_SHARE = 1 / 3
#: bytes per parameter in a resume checkpoint (weights + Adam's two moments, fp32) and in model.pt (weights)
CHECKPOINT_BYTES, MODEL_BYTES = 12, 4
#: bytes per parameter held during training (weights, gradients, two optimiser moments)
TRAINING_STATE_BYTES = 16


@dataclasses.dataclass
class Cost:
    """One row of the cost file."""

    item: str
    gflop: float
    cpu_s: float | None
    peak_mb: float | None
    params_m: float
    voxels: int | None
    mirroring: int | None


@dataclasses.dataclass
class Row:
    """One job of the plan."""

    job: str
    gpus: int
    iterations: str
    hours: float  # wall hours of the job on its GPUs
    peak_gb: float | None
    disk_gb: float
    basis: str
    after: list[str]
    start: float = 0.0
    end: float = 0.0

    @property
    def gpu_hours(self) -> float:
        return self.hours * max(1, self.gpus)


@dataclasses.dataclass
class Plan:
    rows: list[Row]
    gpu: str
    gpus: int
    wall_hours: float
    critical_path: list[str]
    notes: list[str]

    @property
    def gpu_hours(self) -> float:
        return sum(r.gpu_hours for r in self.rows)

    @property
    def hours(self) -> float:
        return sum(r.hours for r in self.rows)

    @property
    def disk_gb(self) -> float:
        return sum(r.disk_gb for r in self.rows)


def read_costs(path: str | Path) -> dict[str, Cost]:
    path = Path(path)
    if not path.is_file():
        raise AdunetError(f"costs file {path} not found; write it with benchmarks/bench_plan_costs.py or give --costs")

    def number(value: str | None) -> float | None:
        try:
            return float(value) if value not in (None, "") else None
        except ValueError:
            return None

    try:
        with path.open(encoding="utf-8", newline="") as f:
            out = {}
            for row in csv.DictReader(f):
                out[row["item"]] = Cost(row["item"], float(row["gflop"]), number(row.get("cpu_s")),
                                        number(row.get("peak_mb")), number(row.get("params_m")) or 0.0,
                                        int(number(row.get("voxels")) or 0) or None,
                                        int(number(row.get("mirroring")) or 0) or None)
    except (KeyError, ValueError) as exc:
        raise AdunetError(f"costs file {path}: not a cost table ({type(exc).__name__}: {exc}); see "
                          "benchmarks/bench_plan_costs.py") from None
    if not out:
        raise AdunetError(f"costs file {path}: no rows")
    return out


class Estimator:
    """Seconds for FLOPs or measured CPU seconds, on the chosen device."""

    def __init__(self, costs: dict[str, Cost], gpu: str, cost_file: Path):
        self.costs, self.gpu, self.cost_file = costs, gpu, cost_file
        timed = costs.get("nnunet_train:adunet_all")
        # the CPU rate a large 3D convnet reached on the cost file's machine, for rows it did not time
        self.cpu_rate = (timed.gflop / timed.cpu_s) if timed and timed.cpu_s else None

    def cost(self, item: str) -> Cost:
        if item not in self.costs:
            raise AdunetError(f"costs file {self.cost_file} has no row {item!r}; rerun benchmarks/bench_plan_costs.py "
                              "for these params")
        return self.costs[item]

    def seconds(self, item: str, count: float, bf16: bool = True, scale: float = 1.0) -> tuple[float, bool]:
        """(seconds of ``count`` × ``scale`` units of ``item``, measured?)."""
        c = self.cost(item)
        if self.gpu == "cpu":
            if c.cpu_s is not None:
                return count * scale * c.cpu_s, True
            if self.cpu_rate is None:
                raise AdunetError(f"costs file {self.cost_file}: {item} has no CPU seconds and no timed nnU-Net row "
                                  "to extrapolate from")
            return count * scale * c.gflop / self.cpu_rate, False
        device = DEVICES[self.gpu]
        return count * scale * c.gflop * 1e9 / ((device.bf16 if bf16 else device.tf32) * GPU_EFFICIENCY), False


def _studies(data: str, synthetic: int) -> tuple[int, str]:
    if data == "synthetic":
        return synthetic, "synthetic (params)"
    lowered = str(data).lower()
    for word, n in COHORT.items():
        if word in lowered:
            return n, f"assumed for {word}"
    return DEFAULT_STUDIES, "assumed"


def _planning_copy(params_path: Path, folder: Path) -> tuple[Path, int]:
    """A copy of the params file with ``device: cpu`` (a plan is made before the GPU is there) and without
    ``segmentation.num_gpus`` (checked against this machine's GPUs); returns it and that GPU count."""
    data = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{params_path}: not a params file (a mapping of blocks)")
    common = data.setdefault("common", {}) or {}
    data["common"] = {**common, "device": "cpu"}
    segmentation = data.get("segmentation") or {}
    num_gpus = int(segmentation.pop("num_gpus", 1) or 1)
    out = folder / params_path.name
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out, num_gpus


def make_plan(params_path: str | Path, gpu: str = "h100", gpus: int = 1, costs: str | Path | None = None,
              shards: int = 2, root: str | Path | None = None) -> Plan:
    """The plan of every job ``adunet submit PARAMS --gpus N --shards S`` would start."""
    from adunet_lib.run_folder import project_root
    from adunet_lib.runner.params import declared_parameters
    from adunet_lib.runner.reproduce import plan as check_params
    from adunet_lib.runner.submit import job_graph

    if gpu not in GPU_CHOICES:
        raise ParamsError(f"--gpu {gpu}: use one of {', '.join(GPU_CHOICES)}")
    if gpus < 1:
        raise ParamsError(f"--gpus {gpus}: must be at least 1")
    params_path = Path(params_path)
    if not params_path.is_file():
        raise ParamsError(f"{params_path}: no such params file")
    root = Path(root) if root else project_root(params_path.resolve().parent)
    cost_file = Path(costs) if costs else root / COST_FILE
    est = Estimator(read_costs(cost_file), gpu, cost_file)
    with tempfile.TemporaryDirectory(prefix="adunet-plan-") as tmp:
        copy, nnunet_gpus = _planning_copy(params_path, Path(tmp))
        jobs = job_graph(copy, shards=shards, gpus=0 if gpu == "cpu" else gpus, root=root)
        _, selected = check_params(copy, root=root)  # once: each check builds the networks (meta device)
    # what each notebook runs with: its declared defaults, then the params file's (as units.unit_values)
    values = {nb.number: {**{k: d.default for k, d in declared_parameters(nb.path).items()}, **v} for nb, v in selected}
    pre, maps_v, seg = values["01"], values["05"], values["06"]
    internal, internal_how = _studies(pre["internal_data"], int(pre.get("synth_internal_cases", 0)))
    external, external_how = _studies(pre["external_data"], int(pre.get("synth_external_cases", 0)))
    studies = internal + external
    notes = [f"cohort: {internal} internal studies ({internal_how}), {external} external ({external_how}); "
             f"{SLICES_PER_STUDY} slices per study (assumed)"]
    voxels = next((c.voxels for c in est.costs.values() if c.voxels), 384 * 384 * SLICES_PER_STUDY)
    n_folds = int(pre.get("n_folds", 5))

    # reconstruction models: block values per model
    blocks: dict[str, dict[str, Any]] = {}
    for number in ("02", "03", "04"):
        v = values[number]
        for model, config in (v.get("models") or {}).items():
            blocks[model] = {**v, "config": dict(config or {})}

    def nnunet_row(channels: int) -> str:
        return {1: "zones", 3: "baseline"}.get(channels, "adunet_all")

    def hours_of(parts: list[tuple[str, float, bool, float]]) -> tuple[float, str]:
        total, measured = 0.0, []
        for item, count, bf16, scale in parts:
            s, m = est.seconds(item, count, bf16, scale)
            total += s
            measured.append(m)
        if gpu == "cpu":
            basis = "measured (CPU)" if all(measured) else ("partly extrapolated (CPU rate)" if any(measured)
                                                              else "extrapolated (CPU rate)")
        else:
            basis = "extrapolated (FLOPs)"
        return total / 3600, basis

    def nnunet_training(row: str, folds: int, settings: dict[str, Any]) -> tuple[list, int]:
        epochs = int(settings.get("epochs") or NNUNET_EPOCHS)
        per_epoch = int(settings.get("iterations_per_epoch") or NNUNET_ITERATIONS)
        val = int(settings.get("val_iterations_per_epoch") or NNUNET_VAL_ITERATIONS)
        iterations = folds * epochs * per_epoch
        return [(f"nnunet_train:{row}", iterations, True, 1.0),
                (f"nnunet_train:{row}", folds * epochs * val, True, FORWARD_SHARE)], iterations

    def nnunet_predict(row: str, fold_predictions: float, mirroring: bool) -> tuple[str, float, bool, float]:
        c = est.cost(f"nnunet_predict:{row}")
        scale = 1.0 if mirroring else 1.0 / (c.mirroring or 1)
        return (f"nnunet_predict:{row}", fold_predictions, True, scale)

    def gb(n_bytes: float) -> float:
        return n_bytes / 1e9

    from adunet_lib.vocabulary import variant as variant_spec

    rows: list[Row] = []
    trained = [j.name[len("train_"):] for j in jobs if j.name.startswith("train_")]
    map_models = list(maps_v.get("models") or []) or trained
    for job in jobs:
        g = max(1, job.gpus) if gpu != "cpu" else 1
        parts: list[tuple[str, float, bool, float]] = []
        peak: float | None = None
        disk = 0.0
        iterations = ""
        if job.name == "prepare":
            zone = dict(pre.get("zone_model") or {})
            predicted = [s for s, source in (pre.get("mask_source") or {}).items() if "predicted" in str(source)]
            zone_parts, its = ([], 0)
            if predicted:
                zone_folds = len(zone.get("folds") or range(int(zone.get("n_folds", 5))))
                zone_parts, its = nnunet_training(nnunet_row(len(zone.get("channels") or ["t2w"])), zone_folds, zone)
                zone_parts.append(nnunet_predict("zones", studies * zone_folds, bool(zone.get("mirroring", True))))
                zc = est.cost("nnunet_train:zones")
                disk += gb(internal * voxels * 4 * 2 + zone_folds * 2 * zc.params_m * 1e6 * CHECKPOINT_BYTES)
                peak = _peak(est, "nnunet_train:adunet_all", zc.params_m)
            parts = zone_parts
            iterations = f"zone model {its:,} + {studies:,} studies"
            prep_h = studies * PREPROCESS_S_PER_STUDY / 3600
            # cases/ on the T2W grid (3 float32 images + 3 label maps) and the model slices (small)
            disk += gb(studies * voxels * (3 * 4 + 3))
            h, basis = hours_of(parts)
            rows.append(Row(job.name, g, iterations, h + prep_h, peak, disk,
                            basis + "; preprocessing assumed", job.after))
            continue
        if job.name.startswith("train_"):
            model = job.name[len("train_"):]
            b = blocks[model]
            runs = (3 if b["channels"] == "per_sequence" else 1) * len(b["modes"])
            parts_k = int(pre.get("leak_free_maps", 0))
            if parts_k >= 2 and "cropped" in b["modes"]:
                runs += parts_k * (3 if b["channels"] == "per_sequence" else 1)
            its = int(b["iterations"])
            bf16 = bool(b["config"].get("mixed_precision", False))
            parts = [(f"train:{model}", runs * its, bf16, 1.0)]
            c = est.cost(f"train:{model}")
            disk = gb(runs * c.params_m * 1e6 * (CHECKPOINT_BYTES + MODEL_BYTES))
            peak = gb(c.params_m * 1e6 * TRAINING_STATE_BYTES + (c.peak_mb or 0) * 2**20 / g)
            iterations = f"{runs} × {its:,}"
            h, basis = hours_of(parts)
            rows.append(Row(job.name, g, iterations, h / g, peak, disk,
                            basis + (f"; ÷{g} data-parallel (ideal)" if g > 1 else ""), job.after))
            continue
        if job.name.startswith("maps_"):
            k, _, n = job.name[len("maps_"):].partition("of")
            share = len(range(int(k) - 1, studies, int(n))) / studies if studies else 0
            slices = studies * share * SLICES_PER_STUDY
            for model in map_models:
                if model not in blocks:
                    continue
                calls = 3 if blocks[model]["channels"] == "per_sequence" else 1
                parts.append((f"translate:{model}", slices * calls, bool(blocks[model]["config"].get(
                    "mixed_precision", False)), 1.0))
                c = est.cost(f"translate:{model}")
                peak = max(peak or 0.0, gb(c.params_m * 1e6 * MODEL_BYTES + (c.peak_mb or 0) * 2**20))
            disk = gb(studies * share * 3 * voxels * 4 * len(map_models))
            iterations = f"{round(studies * share):,} studies × {len(map_models)} models"
            h, basis = hours_of(parts)
            rows.append(Row(job.name, g, iterations, h, peak, disk, basis, job.after))
            continue
        if job.name == "maps":
            rows.append(Row(job.name, g, "the set's record", 0.0, None, 0.0, "negligible (what no shard made)",
                            job.after))
            continue
        if job.name.startswith("nnunet_"):
            name, _, fold = job.name[len("nnunet_"):].rpartition("_fold")
            spec = variant_spec(name)
            channels = len(spec.channels())
            row = nnunet_row(channels)
            parts, its = nnunet_training(row, 1, seg)
            c = est.cost(f"nnunet_train:{row}")
            disk = gb(2 * c.params_m * 1e6 * CHECKPOINT_BYTES)
            folds = list(seg.get("folds") or [])
            if folds and int(fold) == folds[0]:  # the first fold exports and preprocesses the variant's data
                disk += gb(internal * voxels * channels * 4 * 2)
            peak = _peak(est, "nnunet_train:adunet_all", c.params_m)
            h, basis = hours_of(parts)
            rows.append(Row(job.name, g, f"{its:,}", h / max(1, g) if g > 1 else h, peak, disk,
                            basis + (f"; ÷{g} nnU-Net -num_gpus" if g > 1 else ""), job.after))
            continue
        if job.name == "assemble":
            from adunet_lib.vocabulary import table_variants

            variants = table_variants(seg["variants"], seg.get("oracle_row", False),
                                      (seg["internal_data"], seg["external_data"]))
            folds = len(seg.get("folds") or [])
            mirroring = bool(seg.get("mirroring", True))
            for name in variants:
                spec = variant_spec(name)
                channels = len(spec.channels())
                # validation cases by the fold that held them out, external cases by every fold
                parts.append(nnunet_predict(nnunet_row(channels), internal * min(1.0, folds / n_folds)
                                            + external * folds, mirroring))
            # Table I: healthy slices of the validation split and the external set, both modes, every model
            table1_slices = (internal / n_folds + external) * SLICES_PER_STUDY
            for model in trained:
                b = blocks[model]
                calls = (3 if b["channels"] == "per_sequence" else 1) * len(b["modes"])
                parts.append((f"translate:{model}", table1_slices * calls,
                              bool(b["config"].get("mixed_precision", False)), 1.0))
            predicted = internal * min(1.0, folds / n_folds) + external
            disk = gb(len(variants) * predicted * voxels * (2 * 4 + 4))  # softmax (2 classes) + detection map
            iterations = f"{len(variants)} variants × {round(predicted):,} studies; Table I"
            h, basis = hours_of(parts)
            rows.append(Row(job.name, g, iterations, h, None, disk, basis, job.after))
            continue
        raise AdunetError(f"adunet plan: no cost model for job {job.name}")  # a new kind of job in job_graph
    notes.append(_device_note(gpu))
    wall, path = schedule(rows, gpus)
    return Plan(rows, gpu, gpus, wall, path, notes)


def _peak(est: Estimator, item: str, params_m: float) -> float | None:
    c = est.costs.get(item)
    if c is None or c.peak_mb is None:
        return None
    return (params_m * 1e6 * TRAINING_STATE_BYTES + c.peak_mb * 2**20) / 1e9


def _device_note(gpu: str) -> str:
    if gpu == "cpu":
        return ("device: the CPU of the cost file, its measured seconds per iteration (rows it did not time: "
                "their FLOPs at the rate its timed nnU-Net iteration reached)")
    d = DEVICES[gpu]
    return (f"device: {d.name}, dense peaks bf16 {d.bf16 / 1e12:.0f}, TF32 {d.tf32 / 1e12:.0f}, fp32 "
            f"{d.fp32 / 1e12:.1f} TFLOP/s; efficiency {GPU_EFFICIENCY:.0%} of peak ASSUMED (not measured: "
            "no GPU yet), bf16 for nnU-Net (AMP) and models with mixed_precision, TF32 for the others")


def schedule(rows: list[Row], gpus: int) -> tuple[float, list[str]]:
    """List-schedule the jobs in graph order on ``gpus`` GPUs; sets start/end; returns (wall hours,
    the critical path: the chain of jobs that ends last, each the one that held up the next)."""
    waiting = list(rows)
    running: list[Row] = []
    done: dict[str, float] = {}
    now = 0.0
    blocker: dict[str, str | None] = {}
    last_freed: str | None = None
    while waiting or running:
        started = True
        while started:
            started = False
            for r in list(waiting):
                need = min(max(1, r.gpus), gpus)
                if set(r.after) <= done.keys() and need <= gpus - sum(min(max(1, x.gpus), gpus) for x in running):
                    r.start = now
                    r.end = now + r.hours
                    # what it waited for last: a job it depends on, or the job that freed its GPUs
                    ready_at = max((done[a] for a in r.after), default=0.0)
                    dep = max(r.after, key=lambda a: done[a]) if r.after else None
                    blocker[r.job] = dep if ready_at >= now - 1e-12 or last_freed is None else last_freed
                    waiting.remove(r)
                    running.append(r)
                    started = True
        if not running:
            names = ", ".join(r.job for r in waiting)
            raise AdunetError(f"adunet plan: jobs {names} can never start (a dependency outside the graph)")
        first = min(running, key=lambda x: x.end)
        now = first.end
        for r in [x for x in running if x.end <= now + 1e-12]:
            running.remove(r)
            done[r.job] = r.end
            last_freed = r.job
    end = max(done.values(), default=0.0)
    path: list[str] = []
    current: str | None = max(done, key=lambda n: done[n]) if done else None
    while current is not None and current not in path:
        path.append(current)
        current = blocker.get(current)
    return end, path[::-1]


def _compact(path: list[str]) -> list[str]:
    """Runs of nnU-Net folds or map shards in a path as one entry (``25 nnU-Net folds``)."""
    import re

    kinds = {"nnU-Net fold": re.compile(r"nnunet_.+_fold\d+$"), "map shard": re.compile(r"maps_\d+of\d+$")}
    out: list[str] = []
    run: tuple[str, int] | None = None
    for name in [*path, ""]:
        kind = next((k for k, pattern in kinds.items() if pattern.match(name)), None)
        if run and kind == run[0]:
            run = (kind, run[1] + 1)
            continue
        if run:
            out.append(f"{run[1]} {run[0]}s" if run[1] > 1 else last)
        run, last = ((kind, 1) if kind else None), name
        if not kind and name:
            out.append(name)
    return out


def _fmt_gb(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _fmt_h(value: float) -> str:
    if value == 0:
        return "0"
    if value < 0.01:
        return "<0.01"
    return f"{value:.2f}" if value < 10 else f"{value:,.0f}"


def render(plan: Plan, fmt: str = "text", params_name: str = "", cost_file: str = "") -> str:
    """The plan as a plain-text table (``text``) or Markdown (``md``)."""
    unit = "CPU" if plan.gpu == "cpu" else "GPU"
    head = ["job", f"{unit}s", "iterations", "hours", f"{unit}-hours", "peak GB", "disk GB", "figures"]
    body = [[r.job, str(r.gpus), r.iterations, _fmt_h(r.hours), _fmt_h(r.gpu_hours), _fmt_gb(r.peak_gb),
             f"{r.disk_gb:.1f}", r.basis] for r in plan.rows]
    total = ["total", "", "", _fmt_h(plan.hours), _fmt_h(plan.gpu_hours), "", f"{plan.disk_gb:.1f}", ""]
    where = "CPU" if plan.gpu == "cpu" else f"{plan.gpu} ×{plan.gpus}"
    title = f"adunet plan {params_name} on {where}" + (f" (costs: {cost_file})" if cost_file else "")
    days = plan.wall_hours / 24
    summary = [f"wall: {_fmt_h(plan.wall_hours)} h ({days:.1f} days{f', {days / 365:,.0f} years' if days > 365 else ''}) "
               f"with {plan.gpus} {'CPU worker(s)' if plan.gpu == 'cpu' else 'GPU(s)'}; {unit}-hours: "
               f"{_fmt_h(plan.gpu_hours)}; disk: {plan.disk_gb:.0f} GB",
               "critical path: " + " → ".join(_compact(plan.critical_path)),
               *plan.notes,
               "peak GB: per device, from the CPU's fp32 measurement (activations + 16 bytes per parameter); "
               "AMP on a GPU needs less. disk GB: uncompressed estimates (checkpoints from parameter counts, "
               "maps = studies × 3 sequences × voxels × 4 bytes, nnU-Net data = studies × channels × voxels × 4 bytes × 2)"]
    if fmt == "md":
        lines = [f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
        lines.append("| " + " | ".join(f"**{c}**" if c else "" for c in total) + " |")
        lines += [""] + [f"- {s}" for s in summary]
        return "\n".join(lines) + "\n"
    widths = [max(len(row[i]) for row in [head, *body, total]) for i in range(len(head))]
    right = {1, 3, 4, 5, 6}

    def line(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(head), rule, *map(line, body), rule, line(total), "", *summary]) + "\n"


def plan_command(params: str, gpu: str = "h100", gpus: int = 1, costs: str | None = None, shards: int = 2,
                 fmt: str = "text", log: Callable[[str], None] = print) -> Plan:
    plan = make_plan(params, gpu, gpus, costs, shards)
    shown = str(costs) if costs else str(COST_FILE)
    log(render(plan, fmt, params_name=str(params), cost_file=shown).rstrip("\n"))
    return plan
