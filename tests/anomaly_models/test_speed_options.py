"""The speed switches (``SpeedOptions``: channels_last, mixed_precision, fused_optimizer) change rounding only.

Every registered model is trained for a few steps on the same batches with the same random draws,
once on the plain fp32 path and once with one switch on; losses and reconstructions must agree.
Measured on a 2-core AVX512-BF16 machine (2 channels, 32², smoke networks, 4 steps): channels_last
and fused_optimizer ≤ 3e-7 in the losses (relative) and ≤ 1e-6 in the reconstructions;
mixed_precision (bf16) ≤ 2.2e-2 relative in the losses (the FP-GAN's gradient penalty) and ≤ 4.5e-2 in
the reconstructions (the DDPM: 100 × a bf16 classifier gradient).
"""

import pytest
import torch

from adunet_lib.anomaly_models import available, create
from adunet_lib.anomaly_models.base import SliceBatch, SpeedOptions, bf16_native, speed_switches
from adunet_lib.anomaly_models.registry import get

SIZE = 32
STEPS = 4
#: (relative loss tolerance, absolute reconstruction tolerance on [0, 1] intensities)
TOLERANCE = {"channels_last": (1e-4, 1e-4), "fused_optimizer": (1e-4, 1e-4), "mixed_precision": (0.1, 0.1),
             "critic_gemm": (1e-4, 1e-4)}
#: the models with the switches (every built-in one; a plugin model may go without)
MODELS = [name for name in available() if issubclass(get(name).Config, SpeedOptions)]


@pytest.fixture(autouse=True)
def one_thread():
    """One thread: the same rounding on every machine, and no waiting for a descheduled thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(name: str, options: dict) -> tuple[list[dict[str, float]], torch.Tensor]:
    """Loss rows of ``STEPS`` training steps and the reconstruction of three fixed slices."""
    config = {**get(name).smoke_config(), **options}
    if name == "fpgan":
        config["n_critic"] = 2  # two generator updates within the steps
    torch.manual_seed(0)
    model = create(name, 2, SIZE, config)
    model.configure(total_iterations=100, epoch_length=10)
    data = torch.Generator().manual_seed(3)
    torch.manual_seed(1)
    rows = []
    for _ in range(STEPS):
        batch = SliceBatch(torch.rand(6, 2, SIZE, SIZE, generator=data), torch.arange(6) % 2,
                           torch.ones(6, 1, SIZE, SIZE))
        rows.append(model.train_step(batch))
        model.step += 1
    torch.manual_seed(5)
    return rows, model.reconstruct(torch.rand(3, 2, SIZE, SIZE, generator=data))


def test_every_built_in_model_has_the_switches():
    assert {"dense_ae", "spatial_ae", "ddpm", "fpgan"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_each_speed_option_gives_the_plain_results_within_tolerance(name):
    plain_rows, plain_out = _train(name, {})
    options = speed_switches(get(name).Config)
    assert set(options) <= set(TOLERANCE), f"{name}: a speed switch without a tolerance here"
    for option in options:
        loss_tol, out_tol = TOLERANCE[option]
        rows, out = _train(name, {option: True})
        assert out.shape == plain_out.shape and out.dtype == torch.float32 and out.is_contiguous()
        for step, (a, b) in enumerate(zip(plain_rows, rows)):
            assert a.keys() == b.keys()
            for key in a:
                assert b[key] == pytest.approx(a[key], rel=loss_tol, abs=1e-3), (option, step, key)
        worst = float((out - plain_out).abs().max())
        assert worst <= out_tol, (option, worst)


def test_mixed_precision_runs_in_bf16_only_where_the_hardware_has_it():
    plain = create("fpgan", 1, SIZE, get("fpgan").smoke_config())
    mixed = create("fpgan", 1, SIZE, {**get("fpgan").smoke_config(), "mixed_precision": True})
    assert not plain.bf16
    assert mixed.bf16 == bf16_native(torch.device("cpu"))
    dtypes = []
    mixed.generator.main[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    mixed.reconstruct(torch.rand(2, 1, SIZE, SIZE))
    assert dtypes == [torch.bfloat16 if mixed.bf16 else torch.float32]


def test_channels_last_and_fused_optimizer_are_applied():
    model = create("dense_ae", 1, SIZE, {**get("dense_ae").smoke_config(), "channels_last": True,
                                         "fused_optimizer": True})
    model.configure(total_iterations=10, epoch_length=5)
    conv = model.net.encoder[1][0].weight  # 8 → 16 channels (1 input channel has no layout)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert model.optimizers()["autoencoder"].defaults["fused"] is True


def test_critic_gemm_computes_the_late_critic_layers_as_matrix_multiplies_with_the_same_weights():
    """The FP-GAN's own switch: same parameters and state dict, same outputs, only the small-output layers switched."""
    config = get("fpgan").smoke_config()  # 3 critic layers at 32²: outputs 16², 8², 4²
    plain, gemm = create("fpgan", 1, SIZE, config), create("fpgan", 1, SIZE, {**config, "critic_gemm": True})
    assert "critic_gemm" in speed_switches(get("fpgan").Config)
    assert [getattr(m, "gemm", None) for m in gemm.discriminator.main[::2]] == [False, False, True]
    assert not any(getattr(m, "gemm", False) for m in plain.discriminator.main)
    gemm.discriminator.load_state_dict(plain.discriminator.state_dict())  # same keys and shapes
    x = torch.rand(3, 1, SIZE, SIZE) * 2 - 1
    for a, b in zip(plain.discriminator(x), gemm.discriminator(x)):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
