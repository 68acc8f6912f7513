"""One contract for every registered reconstruction model: a new model is tested without new tests.

Each model is built with its ``smoke_config()``, trained for two CPU steps, asked to reconstruct,
saved and loaded, and interrupted + resumed.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from adunet_lib.anomaly_models import available, create
from adunet_lib.anomaly_models.checkpoint import load_model, read_checkpoint
from adunet_lib.anomaly_models.data import SliceData
from adunet_lib.anomaly_models.training import TrainSettings, fit

SIZE = 32


def toy_slices(channels: int, n: int = 24, seed: int = 0) -> SliceData:
    """Disc-shaped 'glands' with a dark/bright blob on the lesion slices."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    gland = ((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (SIZE / 2.5) ** 2).astype(np.float32)
    images = np.repeat(gland[None, None], n, 0).repeat(channels, 1) * 0.6
    images += rng.normal(0, 0.03, images.shape).astype(np.float32) * gland
    labels = np.array([i % 3 == 0 for i in range(n)], np.int64)
    lesions = np.zeros((n, 1, SIZE, SIZE), np.uint8)
    for i in np.flatnonzero(labels):
        blob = (yy - 18) ** 2 + (xx - 14) ** 2 < 16
        images[i, :, blob] = 0.15
        lesions[i, 0, blob] = 1
    index = pd.DataFrame({"set": "internal", "split": "train", "case_id": [f"c{i // 4}" for i in range(n)],
                          "slice": np.arange(n) % 4, "z": np.arange(n) % 4,
                          "label": np.where(labels == 1, "lesion", "healthy")})
    # healthy-only models train on negative cases: make cases c0, c2, … negative
    neg = index["case_id"].isin([f"c{k}" for k in range(0, n // 4, 2)]).to_numpy()
    labels[neg] = 0
    lesions[neg] = 0
    images[neg] = np.clip(np.repeat(gland[None, None], neg.sum(), 0).repeat(channels, 1) * 0.6, 0, 1)
    index.loc[neg, "label"] = "healthy"
    return SliceData(np.clip(images, 0, 1).astype(np.float32), labels, np.repeat(gland[None, None], n, 0),
                     lesions, index)


MODELS = available()


def test_the_paper_models_are_registered():
    assert {"dense_ae", "spatial_ae", "ddpm", "fpgan"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("channels", [1, 3])
def test_train_reconstruct_and_round_trip(name, channels, tmp_path):
    data = toy_slices(channels)
    model, history = fit(name, data, tmp_path, TrainSettings(iterations=2, batch_size=4, log_every=1, seed=0),
                         model_config=_smoke(name), show_progress=False, log=lambda _: None)
    assert len(history) == 2 and np.isfinite(history.drop(columns="iteration").to_numpy()).all()
    x = torch.from_numpy(data.images[:5])
    out = model.reconstruct(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # the checkpoint holds weights + resolved config and loads without unpickling code
    payload = read_checkpoint(tmp_path / "model.pt")
    assert payload["config"]["model"] == name and payload["config"]["in_channels"] == channels
    torch.manual_seed(123)
    again = load_model(tmp_path / "model.pt").reconstruct(x)
    torch.manual_seed(123)
    torch.testing.assert_close(again, model.reconstruct(x))


def _smoke(name):
    from adunet_lib.anomaly_models.registry import get

    return get(name).smoke_config()


@pytest.mark.parametrize("name", MODELS)
def test_interrupted_training_resumes_to_the_same_weights(name, tmp_path):
    data = toy_slices(1)
    settings = TrainSettings(iterations=6, batch_size=4, checkpoint_every=2, log_every=1, seed=5)
    straight, _ = fit(name, data, tmp_path / "straight", settings, _smoke(name), show_progress=False,
                      log=lambda _: None)
    fit(name, data, tmp_path / "resumed", settings, _smoke(name), show_progress=False, stop_after=3,
        log=lambda _: None)
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file() and not (tmp_path / "resumed" / "model.pt").exists()
    resumed, history = fit(name, data, tmp_path / "resumed", settings, _smoke(name), show_progress=False,
                           log=lambda _: None)
    assert list(history["iteration"]) == [1, 2, 3, 4, 5, 6]
    for key, net in straight.networks().items():
        for (pname, a), b in zip(net.state_dict().items(), resumed.networks()[key].state_dict().values()):
            torch.testing.assert_close(a, b, msg=f"{name}.{key}.{pname} differs after resume")
    # done means done: a third call loads the final model instead of training again
    before = (tmp_path / "resumed" / "model.pt").stat().st_mtime_ns
    fit(name, data, tmp_path / "resumed", settings, _smoke(name), show_progress=False, log=lambda _: None)
    assert (tmp_path / "resumed" / "model.pt").stat().st_mtime_ns == before


@pytest.mark.parametrize("name", MODELS)
def test_in_channels_is_never_hard_coded(name):
    for channels in (1, 2, 3):
        model = create(name, channels, SIZE, _smoke(name))
        out = model.reconstruct(torch.rand(2, channels, SIZE, SIZE))
        assert out.shape == (2, channels, SIZE, SIZE)
    with pytest.raises(ValueError, match="expected"):
        create(name, 1, SIZE, _smoke(name)).reconstruct(torch.rand(2, 3, SIZE, SIZE))


def test_unknown_hyperparameters_are_refused():
    with pytest.raises(ValueError, match="unknown hyperparameter.*widht"):
        create("dense_ae", 1, SIZE, {"widht": 3})
