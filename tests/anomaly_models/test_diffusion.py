"""The guided diffusion model (``ddpm``): DDIM math, classifier guidance, and a short real fit.

The contract test covers training, checkpoints and resuming; these tests cover what only this model
promises: encoding then decoding without guidance gives the slice back, "fast" sampling really makes
``ddim_steps`` network calls, guidance moves a lesion toward healthy, and a short fit learns something.
"""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from adunet_lib.anomaly_models import create
from adunet_lib.anomaly_models.data import SliceData
from adunet_lib.anomaly_models.diffusion.model import GuidedDiffusion
from adunet_lib.anomaly_models.diffusion.sampling import (
    alphas_cumprod,
    beta_schedule,
    ddim_decode,
    ddim_encode,
    ddim_timesteps,
)
from adunet_lib.anomaly_models.training import TrainSettings, fit

SIZE = 32
BLOB = (slice(12, 20), slice(10, 18))


def disc_slices(n: int, lesion: bool, seed: int = 0) -> torch.Tensor:
    """``(n, 1, SIZE, SIZE)`` discs of brightness 0.6 with mild noise; lesion slices carry a dark square."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    gland = (((yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2) < (SIZE / 2.5) ** 2).float()
    images = (0.6 + 0.03 * torch.randn(n, 1, SIZE, SIZE, generator=g)) * gland
    if lesion:
        images[..., BLOB[0], BLOB[1]] = 0.15
    return images.clamp(0, 1)


class OracleNoise(nn.Module):
    """A perfect ε-network for one known clean batch: it returns exactly the noise that is in x_t."""

    def __init__(self, x0: torch.Tensor, alpha_bar: torch.Tensor):
        super().__init__()
        self.x0, self.alpha_bar, self.calls = x0, alpha_bar, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        a = self.alpha_bar[t].to(x.dtype).view(-1, 1, 1, 1)
        return (x - a.sqrt() * self.x0) / (1 - a).sqrt()


class GaussianPriorNoise(nn.Module):
    """The exact ε-network for data whose pixels are independent N(mean, std²): a perfect model of a
    blurry "healthy" distribution, loose enough for guidance to move a slice within it."""

    def __init__(self, mean: torch.Tensor, std: float, alpha_bar: torch.Tensor):
        super().__init__()
        self.mean, self.var, self.alpha_bar = mean, std ** 2, alpha_bar

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.alpha_bar[t].to(x.dtype).view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * self.mean) / (a * self.var + 1 - a)


class BlobClassifier(nn.Module):
    """log p(healthy | x) rises as the lesion square brightens; it ignores everything else."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        brightness = x[..., BLOB[0], BLOB[1]].mean(dim=(1, 2, 3))
        return torch.stack([4 * brightness, torch.zeros_like(brightness)], dim=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Networks this small gain nothing from a second thread, and on a busy 2-core machine waiting for it
    made this file 5–10× slower (the short fit: 184 s against 17 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def alpha_bar() -> torch.Tensor:
    return alphas_cumprod(beta_schedule(1000, "linear_beta", 1e-4, 0.02))


def test_the_schedule_is_the_papers_linear_one(alpha_bar):
    from monai.networks.schedulers import DDPMScheduler

    monai = DDPMScheduler(num_train_timesteps=1000, schedule="linear_beta", beta_start=1e-4, beta_end=0.02)
    torch.testing.assert_close(alpha_bar.float(), monai.alphas_cumprod.float())
    assert ddim_timesteps(500, 500) == list(range(500))
    assert ddim_timesteps(500, 50)[-1] == 499 and len(set(ddim_timesteps(500, 50))) == 50


@pytest.mark.parametrize("ddim_steps", [1, 10, 500])
def test_unguided_encode_decode_with_a_perfect_noise_model_gives_the_slice_back(alpha_bar, ddim_steps):
    x0 = disc_slices(3, lesion=True) * 2 - 1
    oracle = OracleNoise(x0, alpha_bar)
    steps = ddim_timesteps(500, ddim_steps)
    latent = ddim_encode(oracle, x0, alpha_bar, steps)
    back = ddim_decode(oracle, latent, alpha_bar, steps, guidance_scale=0.0)
    torch.testing.assert_close(back, x0, atol=1e-5, rtol=0)
    # "fast guided diffusion" really is fast: one ε evaluation per visited timestep each way
    assert oracle.calls == 2 * ddim_steps
    # the latent is noised to level L, not left clean
    assert (latent - x0).abs().mean() > 0.1


def _round_trip(model, x0, alpha_bar, ddim_steps, classifier=None, scale=0.0):
    steps = ddim_timesteps(500, ddim_steps)
    return ddim_decode(model, ddim_encode(model, x0, alpha_bar, steps), alpha_bar, steps, classifier, scale)


def test_fewer_ddim_steps_trade_faithfulness_for_speed(alpha_bar):
    # a perfect model of a broad distribution: unlike the oracle, its ε changes along the path, so
    # skipping timesteps leaves an inversion error that shrinks as ddim_steps grows
    x0 = disc_slices(2, lesion=True) * 2 - 1
    prior = GaussianPriorNoise(disc_slices(1, lesion=False) * 2 - 1, 0.3, alpha_bar)
    errors = [(_round_trip(prior, x0, alpha_bar, n) - x0).abs().mean().item() for n in (10, 50, 500)]
    print(f"s=0 round-trip L1 with 10/50/500 DDIM steps: {errors}")
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.01


def test_guidance_brightens_the_lesion_and_leaves_healthy_tissue_alone(alpha_bar):
    x0 = disc_slices(2, lesion=True) * 2 - 1
    prior = GaussianPriorNoise(disc_slices(1, lesion=False) * 2 - 1, 0.3, alpha_bar)
    outside = torch.ones(SIZE, SIZE, dtype=torch.bool)
    outside[BLOB] = False
    change = {}
    for scale in (0.0, 30.0, 100.0):
        classifier = BlobClassifier()
        diff = _round_trip(prior, x0, alpha_bar, 50, classifier, scale) - x0
        change[scale] = (diff[..., BLOB[0], BLOB[1]].mean().item(), diff[..., outside].abs().mean().item())
        assert classifier.calls == (50 if scale else 0)
    print(f"(lesion brightening, healthy-tissue change) by scale: {change}")
    # toward healthy = a brighter lesion, more so with a larger scale, far beyond the s = 0 round-trip error
    assert change[30.0][0] > change[0.0][0] + 0.3
    assert change[100.0][0] > change[30.0][0]
    for scale in (30.0, 100.0):
        assert change[scale][0] > 5 * change[scale][1]
        assert change[scale][1] == pytest.approx(change[0.0][1], abs=1e-6), "guidance changed tissue it ignores"


def toy_cohort(n_healthy: int = 32, n_lesion: int = 16) -> SliceData:
    images = torch.cat([disc_slices(n_healthy, lesion=False, seed=1), disc_slices(n_lesion, lesion=True, seed=2)])
    labels = np.r_[np.zeros(n_healthy, np.int64), np.ones(n_lesion, np.int64)]
    n = len(labels)
    lesions = np.zeros((n, 1, SIZE, SIZE), np.uint8)
    lesions[labels == 1, 0, BLOB[0], BLOB[1]] = 1
    index = pd.DataFrame({"set": "internal", "split": "train", "case_id": [f"c{i // 8}" for i in range(n)],
                          "slice": np.arange(n) % 8, "z": np.arange(n) % 8,
                          "label": np.where(labels == 1, "lesion", "healthy")})
    return SliceData(images.numpy(), labels, (images > 0).float().numpy(), lesions, index)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> GuidedDiffusion:
    """The smoke-sized model after a short fit on discs (healthy) and discs with a dark square (lesion)."""
    config = GuidedDiffusion.smoke_config() | {"lr": 1e-3, "classifier_lr": 1e-3, "ddim_steps": 10}
    model, _ = fit("ddpm", toy_cohort(), tmp_path_factory.mktemp("ddpm"),
                   TrainSettings(iterations=200, batch_size=8, checkpoint_every=1000, log_every=50, seed=0),
                   model_config=config, show_progress=False, log=lambda _: None)
    return model


def test_the_trained_classifier_tells_noisy_lesion_slices_from_healthy_ones(trained):
    x0 = torch.cat([disc_slices(16, lesion=False, seed=7), disc_slices(16, lesion=True, seed=8)]) * 2 - 1
    labels = torch.cat([torch.zeros(16), torch.ones(16)])
    g = torch.Generator().manual_seed(3)
    t = torch.full((32,), 50)
    a = trained.alpha_bar[50].float()
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=g)
    trained.classifier.eval()
    with torch.no_grad():
        p_lesion = trained.classifier(x_t, t).softmax(-1)[:, 1]
    trained.classifier.train()
    accuracy = ((p_lesion > 0.5).float() == labels).float().mean().item()
    print(f"classifier accuracy at t=50: {accuracy:.2f}")
    assert accuracy > 0.75


def test_unguided_reconstruction_of_a_healthy_slice_stays_close(trained):
    x = disc_slices(4, lesion=False, seed=9)
    trained.config.guidance_scale = 0.0
    out = trained.reconstruct(x)
    error, blank = (out - x).abs().mean().item(), x.abs().mean().item()
    print(f"healthy L1 after s=0 reconstruction: {error:.4f} (blank image: {blank:.4f})")
    assert error < 0.5 * blank


def test_guided_reconstruction_brightens_the_lesion(trained):
    x = disc_slices(4, lesion=True, seed=10)
    outside = (x[0, 0] > 0).clone()
    outside[BLOB] = False
    shifts = {}
    for scale in (0.0, 100.0):
        trained.config.guidance_scale = scale
        diff = trained.reconstruct(x) - x
        shifts[scale] = (diff[..., BLOB[0], BLOB[1]].mean().item(), diff[..., outside].abs().mean().item())
    print(f"lesion brightening / healthy-tissue change: s=0 {shifts[0.0]}, s=100 {shifts[100.0]}")
    assert shifts[100.0][0] > shifts[0.0][0] + 0.05
    assert shifts[100.0][0] > shifts[100.0][1]


def test_the_ddpm_learns_healthy_slices_only_and_the_classifier_stops_when_told():
    from adunet_lib.anomaly_models.base import SliceBatch

    model = create("ddpm", 1, SIZE, GuidedDiffusion.smoke_config() | {"classifier_iterations": 2})
    model.configure(total_iterations=4, epoch_length=1)

    def weights():
        return {k: torch.cat([p.detach().flatten().clone() for p in net.parameters()])
                for k, net in model.networks().items()}

    def step(labels):
        before = weights()
        n = len(labels)
        batch = SliceBatch(torch.rand(n, 1, SIZE, SIZE), torch.tensor(labels), torch.ones(n, 1, SIZE, SIZE))
        losses = model.train_step(batch)
        model.step += 1
        after = weights()
        return losses, {k: not torch.equal(before[k], after[k]) for k in before}

    losses, changed = step([1, 1, 1, 1])
    assert changed == {"unet": False, "classifier": True} and "ddpm" not in losses
    losses, changed = step([0, 0, 1, 1])
    assert changed == {"unet": True, "classifier": True} and {"ddpm", "classifier"} <= set(losses)
    losses, changed = step([0, 0, 1, 1])  # step 2 = classifier_iterations: only the DDPM trains on
    assert changed == {"unet": True, "classifier": False} and "classifier" not in losses


def test_reconstruction_is_deterministic_and_needs_no_rng():
    model = create("ddpm", 2, SIZE, GuidedDiffusion.smoke_config())
    x = torch.rand(3, 2, SIZE, SIZE)
    torch.manual_seed(0)
    first = model.reconstruct(x)
    torch.manual_seed(1)
    torch.testing.assert_close(model.reconstruct(x), first, rtol=0, atol=0)


def test_impossible_settings_fail_at_construction():
    with pytest.raises(ValueError, match="ddim_steps"):
        create("ddpm", 1, SIZE, GuidedDiffusion.smoke_config() | {"ddim_steps": 600})
    with pytest.raises(ValueError, match="norm_num_groups"):
        create("ddpm", 1, SIZE, GuidedDiffusion.smoke_config() | {"channels": (8, 12)})
    with pytest.raises(ValueError, match="divisible"):
        create("ddpm", 1, SIZE + 1, GuidedDiffusion.smoke_config())


def test_wollebs_class_conditional_ddpm_learns_every_slice_told_its_label_and_samples_healthy(tmp_path):
    """``class_conditional`` (Wolleb et al.'s ``--class_cond True``): the DDPM trains on lesion slices
    too, its ε depends on the label it is given, and a reconstruction gives it the healthy label only."""
    from adunet_lib.anomaly_models.base import SliceBatch
    from adunet_lib.anomaly_models.checkpoint import load_model

    config = GuidedDiffusion.smoke_config() | {"class_conditional": True}
    model = create("ddpm", 1, SIZE, config)
    model.configure(total_iterations=4, epoch_length=1)
    before = torch.cat([p.detach().flatten().clone() for p in model.unet.parameters()])
    for _ in range(3):  # lesion slices only: an unconditional DDPM would not train at all
        losses = model.train_step(SliceBatch(torch.rand(4, 1, SIZE, SIZE), torch.ones(4, dtype=torch.long),
                                             torch.ones(4, 1, SIZE, SIZE)))
        model.step += 1
    assert "ddpm" in losses and not torch.equal(before, torch.cat([p.detach().flatten() for p in model.unet.parameters()]))
    x_t, t = torch.randn(2, 1, SIZE, SIZE), torch.tensor([10, 400])
    with torch.no_grad():
        # (guided-diffusion's residual branches and output layer start at zero: the label acts from step 2 on)
        assert not torch.equal(model.unet(x_t, t, class_labels=torch.zeros(2, dtype=torch.long)),
                               model.unet(x_t, t, class_labels=torch.ones(2, dtype=torch.long)))

    # a short fit, then every DDPM call of a reconstruction carries the healthy label (0)
    trained, _ = fit("ddpm", toy_cohort(), tmp_path, TrainSettings(iterations=6, batch_size=8, checkpoint_every=1000,
                                                                   log_every=2, seed=0),
                     model_config=config, show_progress=False, log=lambda _: None)
    reloaded = load_model(tmp_path / "model.pt")
    assert reloaded.config.class_conditional is True
    given = []
    reloaded.unet.register_forward_pre_hook(lambda _, args, kwargs: given.append(kwargs["class_labels"]),
                                            with_kwargs=True)
    out = reloaded.reconstruct(disc_slices(3, lesion=True, seed=11))
    assert out.shape == (3, 1, SIZE, SIZE) and len(given) == 2 * len(ddim_timesteps(reloaded.config.noise_level,
                                                                                   reloaded.config.ddim_steps))
    assert all(labels.tolist() == [0, 0, 0] for labels in given)
    torch.testing.assert_close(out, trained.reconstruct(disc_slices(3, lesion=True, seed=11)))


def test_wollebs_classifier_design_trains_reloads_and_guides(tmp_path):
    """``classifier_design: wolleb`` builds the classifier of Wolleb et al.'s code (a middle block with
    attention, attention pooling) instead of MONAI's flattened perceptron; a run records it, a reload
    rebuilds it, and a reconstruction asks it for one gradient per DDIM step. An unknown design is
    refused at construction, naming the ones there are."""
    from monai.networks.nets.diffusion_model_unet import DiffusionModelEncoder

    from adunet_lib.anomaly_models.checkpoint import load_model
    from adunet_lib.anomaly_models.diffusion.torch_model import WollebClassifier

    assert isinstance(create("ddpm", 1, SIZE, GuidedDiffusion.smoke_config()).classifier, DiffusionModelEncoder)
    config = GuidedDiffusion.smoke_config() | {"classifier_design": "wolleb"}
    trained, _ = fit("ddpm", toy_cohort(), tmp_path, TrainSettings(iterations=6, batch_size=8, checkpoint_every=1000,
                                                                   log_every=2, seed=0),
                     model_config=config, show_progress=False, log=lambda _: None)
    reloaded = load_model(tmp_path / "model.pt")
    assert isinstance(reloaded.classifier, WollebClassifier) and reloaded.config.classifier_design == "wolleb"
    calls = []
    reloaded.classifier.register_forward_hook(lambda *_: calls.append(1))
    x = disc_slices(3, lesion=True, seed=12)
    out = reloaded.reconstruct(x)
    assert out.shape == x.shape and len(calls) == reloaded.config.ddim_steps
    torch.testing.assert_close(out, trained.reconstruct(x))
    with pytest.raises(ValueError, match="adunet.*wolleb.*'flatten'"):
        create("ddpm", 1, SIZE, GuidedDiffusion.smoke_config() | {"classifier_design": "flatten"})
