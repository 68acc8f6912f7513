"""Killed runs restart and finish with exactly the results of uninterrupted ones."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch

from conftest import REPO

TRAIN_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from anomaly_models.test_contract import toy_slices
    from adunet_lib.anomaly_models.registry import get
    from adunet_lib.anomaly_models.training import TrainSettings, fit
    settings = TrainSettings(iterations=300, batch_size=4, checkpoint_every=5, log_every=1, seed=3)
    fit("fpgan", toy_slices(1), sys.argv[1], settings, get("fpgan").smoke_config(), show_progress=False)
""")


def _train(out, script):
    return subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, encoding="utf-8", errors="replace", start_new_session=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_resumes_to_the_uninterrupted_weights(sig, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT.format(tests=str(REPO / "tests")))
    assert _train(tmp_path / "straight", script).wait() == 0

    proc = _train(tmp_path / "killed", script)
    deadline = time.time() + 120
    while not (tmp_path / "killed" / "checkpoint.pt").is_file() and time.time() < deadline:
        time.sleep(0.05)
    # somewhere after the first checkpoint: 300 iterations take seconds, so the kill always lands mid-run
    time.sleep(random.uniform(0.0, 1.0))
    os.killpg(proc.pid, sig)
    proc.wait()
    assert not (tmp_path / "killed" / "model.pt").exists(), "finished before the kill: make the run longer"
    saved = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["state"]["step"]

    restarted = _train(tmp_path / "killed", script)
    output, _ = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, output
    assert f"resuming fpgan at iteration {saved}/300" in output
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["state"]["networks"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=True)["state"]["networks"]
    for net in a:
        for key in a[net]:
            torch.testing.assert_close(a[net][key], b[net][key], msg=f"{net}.{key}")
    history = pd.read_csv(tmp_path / "killed" / "losses.csv")
    assert list(history["iteration"]) == list(range(1, 301))  # no lost or doubled rows


# A killed run of the whole series (notebooks 02–07 as the jobs of `adunet submit`) restarting to the same
# tables is tests/test_reproducibility.py's: one rerun of the smoke series serves both.
