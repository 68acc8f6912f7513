"""Beyond one machine (#13): data-parallel training under torchrun (gloo on CPU), map shards.

torchrun starts real processes here: two on this machine's CPU, with the gloo backend — the same
code path as nccl on GPUs but for the backend and the device.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from adunet_lib.anomaly_models.registry import available

ITERATIONS, STOP = 6, 3

SCRIPT = textwrap.dedent(f"""
    import json, sys
    from pathlib import Path
    import torch
    from adunet_lib.anomaly_models import distributed
    from adunet_lib.anomaly_models.phantoms import phantom_slices
    from adunet_lib.anomaly_models.registry import available, get
    from adunet_lib.anomaly_models.training import TrainSettings, fit

    torch.set_num_threads(1)
    out, phase = Path(sys.argv[1]), sys.argv[2]
    distributed.init_from_env("cpu")
    rank, world = distributed.rank_world()
    data = phantom_slices(24, size=16, seed=0)
    settings = TrainSettings(iterations={ITERATIONS}, batch_size=8, checkpoint_every=100, log_every=1, seed=0)
    said = []
    for name in available():
        config = get(name).smoke_config()
        if phase == "ddp":
            # interrupted half-way and resumed, on 2 processes; and one left half-way for phase "single"
            fit(name, data, out / name / "ddp", settings, config, show_progress=False, stop_after={STOP}, log=said.append)
            fit(name, data, out / name / "ddp", settings, config, show_progress=False, log=said.append)
            fit(name, data, out / name / "cross", settings, config, show_progress=False, stop_after={STOP})
        else:
            # the 2-process checkpoint finished by 1 process; the same training on 1 process throughout
            fit(name, data, out / name / "cross", settings, config, show_progress=False, log=said.append)
            fit(name, data, out / name / "single", settings, config, show_progress=False)
    (out / f"said_{{phase}}_{{rank}}.json").write_text(json.dumps({{"world": world, "said": said}}))
    distributed.finish()
""")


def _said(done: subprocess.CompletedProcess) -> str:
    """The end of a failed launch's stderr, less the faulthandler's list of loaded extension modules
    (thousands of characters after the stacks, which are what tell where a process aborted)."""
    kept = [ln for ln in done.stderr.splitlines() if not ln.lstrip().startswith("Extension modules:")]
    return "\n".join(kept)[-8000:]


def _launch(script: Path, out: Path, phase: str, processes: int) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(script), str(out), phase]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *cmd[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1",
                               # a process that aborts prints where it was (Python stacks of all threads)
                               "PYTHONFAULTHANDLER": "1"})


@pytest.mark.slow
def test_two_processes_train_every_model_resume_across_process_counts_and_match_one(tmp_path):
    """Every registered model trains on 2 gloo processes: finite losses, one final checkpoint (none
    left half-way), a resume at the iteration it stopped; a 2-process checkpoint is finished by 1
    process; and the 2-process loss curve follows the 1-process run with the same global batch."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT, encoding="utf-8")
    out = tmp_path / "out"
    done = _launch(script, out, "ddp", 2)
    assert done.returncode == 0, _said(done)
    done = _launch(script, out, "single", 1)
    assert done.returncode == 0, _said(done)

    ddp = [json.loads((out / f"said_ddp_{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    assert [d["world"] for d in ddp] == [2, 2]
    assert ddp[1]["said"] == []  # process 1 says nothing: process 0 speaks for the run
    single = json.loads((out / "said_single_0.json").read_text(encoding="utf-8"))
    for name in available():
        folder = out / name / "ddp"
        assert (folder / "model.pt").is_file() and not (folder / "checkpoint.pt").exists(), name
        assert f"ddp: resuming {name} at iteration {STOP}/{ITERATIONS}" in ddp[0]["said"], (name, ddp[0]["said"])
        assert f"cross: resuming {name} at iteration {STOP}/{ITERATIONS}" in single["said"], name
        assert (out / name / "cross" / "model.pt").is_file() and not (out / name / "cross" / "checkpoint.pt").exists()
        losses = pd.read_csv(folder / "losses.csv")
        assert list(losses["iteration"]) == list(range(1, ITERATIONS + 1)), name  # one row per step, no duplicates
        numeric = losses.drop(columns=["iteration"]).select_dtypes("number")
        assert numeric.notna().all().all() and numeric.abs().lt(1e6).all().all(), name
        record = __import__("torch").load(folder / "model.pt", weights_only=True)["training"]
        assert record["processes"] == 2, name
    # the same global batch on 1 and on 2 processes: gradients averaged = the 1-process gradient (up to
    # rounding and BatchNorm's per-process statistics), so the autoencoder's loss curve agrees closely
    one = pd.read_csv(out / "dense_ae" / "single" / "losses.csv")
    two = pd.read_csv(out / "dense_ae" / "ddp" / "losses.csv")
    relative = ((two["loss"] - one["loss"]).abs() / one["loss"].abs()).max()
    assert relative < 0.05, (one["loss"].tolist(), two["loss"].tolist())


def test_a_batch_that_does_not_split_over_the_processes_is_one_line():
    from adunet_lib.anomaly_models.distributed import check_batch
    from adunet_lib.errors import AdunetError

    check_batch(16, 4, "fpgan")
    check_batch(5, 1, "fpgan")  # one process: anything goes
    for batch, world in ((10, 4), (4, 4)):
        with pytest.raises(AdunetError, match=f"fpgan: batch_size {batch} does not split over {world} processes"):
            check_batch(batch, world, "fpgan")


@pytest.mark.slow
def test_map_shards_side_by_side_give_the_single_runs_maps(smoke_series, tmp_path):
    """Two `adunet run --stage 05 --model fpgan --shard K/2` processes at once, into a copy of the shared run
    with its maps removed: together they make every FP-GAN map, byte for byte as notebook 05 made them; a shard alone
    leaves the set incomplete, which notebook 06 refuses; notebook 05's call then completes it."""
    from conftest import REPO, series_params

    from adunet_lib.anomaly_maps.stage import generate_maps
    from adunet_lib.errors import AdunetError
    from adunet_lib.run_folder import RunContext

    run, _, _ = smoke_series
    copy = tmp_path / "runs" / "smoke"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("nnunet", "notebooks", "zones", "cases"))
    shutil.copytree(run / "cases", copy / "cases")
    params = series_params(tmp_path)
    shutil.rmtree(copy / "maps")
    cmd = [sys.executable, "-m", "adunet_lib", "run", str(params), "--stage", "05", "--model", "fpgan", "--quiet",
           "--shard"]
    first = subprocess.Popen([*cmd, "1/2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             encoding="utf-8", errors="replace")
    second = subprocess.run([*cmd, "2/2"], cwd=REPO, capture_output=True, text=True, encoding="utf-8", errors="replace")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, (err[-2000:], second.stderr[-2000:])
    assert out.startswith("shard 1/2: maps of ") and second.stdout.startswith("shard 2/2: maps of "), out
    made = sorted(p.relative_to(copy) for p in (copy / "maps").rglob("*.mha"))
    assert made == sorted(p.relative_to(run) for p in (run / "maps" / "fpgan").rglob("*.mha")) and made
    for rel in made:
        assert (copy / rel).read_bytes() == (run / rel).read_bytes(), rel
    ctx = RunContext.create(copy, tmp_path / "figures" / "smoke")
    models = sorted(p.name for p in (copy / "maps").iterdir() if p.is_dir())
    assert models == ["fpgan"]  # --model: the shards made this model's maps only
    assert all(json.loads((copy / "maps" / m / "mapset.json").read_text())["complete"] is False for m in models)

    from adunet_lib.segmentation.stage import SegmentationSettings, _fingerprint
    from adunet_lib.vocabulary import variant

    cases, _ = ctx.tables()
    with pytest.raises(AdunetError, match="only map shards ran for"):
        _fingerprint(ctx, variant("adunet_all"), models[0], cases, SegmentationSettings())
    again = generate_maps(ctx, models, cases, json.loads((run / "maps" / models[0] / "mapset.json").read_text())[
        "kernel_size"], show_progress=False)
    assert again["reused"].all()  # notebook 05 finds every shard's map and makes none again
    assert all(json.loads((copy / "maps" / m / "mapset.json").read_text())["complete"] is True for m in models)


def test_units_name_what_does_not_fit(capsys):
    from conftest import REPO

    from adunet_lib.cli import main

    params = REPO / "params" / "smoke.yaml"
    for argv, line in (
        (["--stage", "07"], "--stage 07: units are 02, 03, 04"),
        (["--stage", "05", "--fold", "1"], "--variant and --fold are for --stage 06"),
        (["--stage", "06", "--variant", "adunet_best"], "--variant adunet_best: not among segmentation.variants"),
        (["--stage", "04", "--shard", "1/2"], "--shard is for --stage 05"),
        (["--stage", "05", "--shard", "3/2"], "--shard 3/2: K must be between 1 and N"),
        (["--stage", "05", "--shard", "two"], "--shard two: give K/N"),
        (["--stage", "04", "--model", "dense_ae"], "--model dense_ae: not among notebook 04_fixed_point_gan's models"),
    ):
        assert main(["run", str(params), *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("adunet run: error: ") and line in err[0], (argv, err)


def test_nnunet_num_gpus_reaches_the_training_step_and_a_run_moved_to_more_gpus_resumes(tmp_path):
    """``segmentation.num_gpus`` goes to the worker's train step (which spawns one process per GPU, as
    nnU-Net's -num_gpus); it is not part of what the variant's results are keyed on, so finished folds
    are not trained again on another number of GPUs."""
    from adunet_lib.run_folder import RunContext
    from adunet_lib.segmentation.nnunet import training_steps
    from adunet_lib.segmentation.stage import SegmentationSettings, _fingerprint
    from adunet_lib.vocabulary import variant

    ctx = RunContext.create(tmp_path / "run", tmp_path / "figures")
    one, four = SegmentationSettings(folds=(0, 1)), SegmentationSettings(folds=(0, 1), num_gpus=4)
    from adunet_lib.nnunet_seam import TrainRequest

    steps = training_steps(ctx, 500, "Dataset500_x", four)
    assert [s.num_gpus for s in steps if isinstance(s, TrainRequest)] == [4, 4]
    cases = pd.DataFrame({"case_id": ["a", "b"], "set": ["internal", "internal"], "fold": [0, 1]})
    assert _fingerprint(ctx, variant("baseline"), "", cases, one) == _fingerprint(ctx, variant("baseline"), "", cases, four)
    assert _fingerprint(ctx, variant("baseline"), "", cases, one) != _fingerprint(
        ctx, variant("baseline"), "", cases, SegmentationSettings(folds=(0,)))


def test_local_jobs_run_after_what_they_wait_for_and_a_failed_job_is_one_line(tmp_path):
    """The local executor runs a graph as submitit jobs: each after its dependencies (two at a time);
    a failing job stops the graph with its name, its own last line and its log."""
    from adunet_lib.errors import AdunetError
    from adunet_lib.runner.submit import Job, run_local, starter

    order = tmp_path / "order.txt"

    def note(name: str, fail: bool = False) -> list[str]:
        code = f"import time; time.sleep(0.3); open({str(order)!r}, 'a').write({name!r} + '\\n')"
        if fail:
            code += "; import sys; print('adunet run: error: case 7: broken.mha: not an image', file=sys.stderr); sys.exit(2)"
        return [sys.executable, "-c", code]

    start = starter(tmp_path / "jobs", "local", str(tmp_path))
    said: list[str] = []
    jobs = [Job("a", note("a")), Job("b", note("b")), Job("c", note("c"), ["a", "b"]), Job("d", note("d"), ["c"])]
    ids = run_local(jobs, start, 2, said.append, poll_s=0.1)
    assert len(ids) == 4 and said[-1].startswith("all 4 jobs done")
    lines = order.read_text().split()
    assert sorted(lines[:2]) == ["a", "b"] and lines[2:] == ["c", "d"]

    order.unlink()
    jobs = [Job("a", note("a")), Job("bad", note("bad", fail=True), ["a"]), Job("never", note("never"), ["bad"])]
    with pytest.raises(AdunetError) as failed:
        run_local(jobs, start, 2, said.append, poll_s=0.1)
    message = str(failed.value)
    assert message.startswith("job bad failed") and "adunet run: error: case 7: broken.mha: not an image" in message
    assert "log: " in message and len(message.splitlines()) == 1
    assert order.read_text().split() == ["a", "bad"]  # what waited on the failed job never started


def test_the_job_graph_waits_where_the_series_needs_it_and_uses_torchrun_for_several_gpus(tmp_path):
    from conftest import REPO, smoke_params

    from adunet_lib.runner.submit import job_graph

    params = smoke_params(tmp_path)
    jobs = {j.name: j for j in job_graph(params, shards=3, gpus=4, root=REPO)}
    trainers = sorted(n for n in jobs if n.startswith("train_"))
    assert trainers == ["train_ddpm", "train_dense_ae", "train_fpgan", "train_spatial_ae"]
    assert all(jobs[t].after == ["prepare"] and jobs[t].gpus == 4 for t in trainers)
    assert jobs["train_fpgan"].command[2:5] == ["torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert [n for n in jobs if n.startswith("maps")] == ["maps_1of3", "maps_2of3", "maps_3of3", "maps"]
    assert sorted(jobs["maps_2of3"].after) == trainers and "--shard" in jobs["maps_2of3"].command
    assert jobs["nnunet_baseline_fold0"].after == ["prepare"]  # no maps: starts with the models
    assert jobs["maps"].after == ["maps_1of3", "maps_2of3", "maps_3of3"] and "--shard" not in jobs["maps"].command
    assert jobs["nnunet_adunet_all_fold0"].after == ["maps"]  # the completed map set, not the shards
    assert list(jobs)[-1] == "assemble" and set(jobs["assemble"].after) == set(jobs) - {"assemble"}
    assert list(jobs)[0] == "prepare" and jobs["prepare"].command[-2:] == ["--to", "01"]


def test_a_unit_refuses_a_run_folder_that_adunet_reproduce_holds(tmp_path, capsys):
    import yaml

    from conftest import smoke_params

    from adunet_lib.cli import main
    from adunet_lib.runner.lock import run_lock

    params = smoke_params(tmp_path)
    run = Path(yaml.safe_load(params.read_text(encoding="utf-8"))["common"]["run_dir"])
    with run_lock(run):
        assert main(["run", str(params), "--stage", "05", "--shard", "1/2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is in use by" in err[0] and "run units before or after it" in err[0], err
    assert main(["run", str(params), "--stage", "05", "--shard", "1/2"]) == 2  # no lock: on to the next check
    assert "run notebook 01_preprocessing for this params file first" in capsys.readouterr().err


def test_the_same_unit_started_twice_is_refused_and_reproduce_waits_for_no_unit(tmp_path, capsys):
    """A job resubmitted while the first still runs: the second is refused with one line naming the
    piece and the process, before it writes anything; another piece of the same run goes ahead, and
    ``adunet reproduce`` is refused while a unit runs. A unit's locks go with it, however it ends."""
    import socket
    import time

    import yaml

    from conftest import smoke_params

    from adunet_lib.cli import main
    from adunet_lib.runner.lock import RunLocked, _start_time, unit_lock, unit_lock_path

    params = smoke_params(tmp_path)
    run = Path(yaml.safe_load(params.read_text(encoding="utf-8"))["common"]["run_dir"])
    (run / "preprocessed").mkdir(parents=True)
    (run / "preprocessed" / "cases.csv").write_text("case_id\n", encoding="utf-8")  # as if notebook 01 had run
    first = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # the first job, alive
    try:
        for _ in range(50):  # its start time, once the kernel lists it
            start = _start_time(first.pid)
            if start:
                break
            time.sleep(0.1)
        held = unit_lock_path(run, "train_fpgan")
        held.write_text(json.dumps({"host": socket.gethostname(), "pid": first.pid, "start": start,
                                    "since": "2026-11-30 09:00:00", "command": "adunet run"}), encoding="utf-8")
        before = sorted(p.name for p in run.rglob("*"))
        assert main(["run", str(params), "--stage", "04", "--model", "fpgan"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{run}: train_fpgan is already being run by another unit" in err[0], err
        assert f"process {first.pid} since 2026-11-30 09:00:00" in err[0] and str(held) in err[0]
        assert sorted(p.name for p in run.rglob("*")) == before  # the second wrote nothing

        with unit_lock(run, ["train_ddpm"]):  # another piece of the same run goes ahead
            mine = json.loads(unit_lock_path(run, "train_ddpm").read_text(encoding="utf-8"))
            # the holder's command as typed, every argument (a unit's names its piece), not the program's path
            assert mine["pid"] == os.getpid() and " ".join(sys.argv[1:])[:100] in mine["command"]
            assert not mine["command"].startswith(("/", sys.argv[0]))
        with pytest.raises(RunLocked, match="train_fpgan is already being run"):
            with unit_lock(run, ["maps_fpgan_1of2", "train_fpgan"]):  # all or none
                pass
        assert not unit_lock_path(run, "maps_fpgan_1of2").exists()

        assert main(["reproduce", str(params), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{run} is in use by a unit: train_fpgan (adunet run, process {first.pid}" in err[0]
        assert not (run / ".adunet.lock").exists() and not (run / "notebooks").exists()
    finally:
        first.kill()
        first.wait()
    notes: list[str] = []
    with pytest.raises(ValueError):  # the first job is gone: its lock is taken over, and released on failure
        with unit_lock(run, ["train_fpgan"], notes.append):
            assert json.loads(held.read_text(encoding="utf-8"))["pid"] == os.getpid()
            raise ValueError("the unit fails")
    assert notes == [f"note: {held}: removing a stale lock (process {first.pid} of 2026-11-30 09:00:00 is gone)"]
    assert not list(run.glob(".unit-*"))
