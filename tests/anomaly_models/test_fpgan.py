"""Fixed-Point GAN: healthy slices pass unchanged, lesions are removed, the networks have the paper's shapes,
and a training iteration costs what the official solver's does.

The behavioural tests train one small FP-GAN on synthetic phantoms (textured discs, half of them with
a dark lesion blob) for 200 iterations and look at the anomaly map ``|x − G(x)|`` of held-out
phantoms. Measured with the settings below on one thread (seed 0; seeds 1–4 in brackets), with the
official solver's critic step (one fake per real slice, permuted target labels):
healthy-slice residual in the gland 0.019 [0.024, 0.043, 0.019, 0.024] (untrained: 0.134); lesion /
rest-of-gland residual ratio 6.4 [5.1, 3.8, 4.4, 3.7]. (The earlier critic step, two fakes with random
targets: 0.015 [0.024, 0.037, 0.023, 0.021] and 6.8 [4.9, 3.9, 4.5, 4.2].)
"""

import numpy as np
import pytest
import torch

from adunet_lib.anomaly_models import create
from adunet_lib.anomaly_models.phantoms import phantom_slices
from adunet_lib.anomaly_models.fpgan.model import HEALTHY, FixedPointGAN
from adunet_lib.anomaly_models.fpgan.torch_model import Discriminator, Generator
from adunet_lib.anomaly_models.training import TrainSettings, fit

SIZE = 32
# small networks and a 10× learning rate with a critic that leads by 2 (paper: 5), so 200
# iterations (~30 s on 2 CPU cores) are enough to see translation; the losses are the paper's
CONFIG = {"conv_dim": 16, "n_res_blocks": 1, "d_layers": 3, "g_lr": 1e-3, "d_lr": 1e-3, "n_critic": 2,
          "decay_from": 0.8}
SETTINGS = TrainSettings(iterations=200, batch_size=8, checkpoint_every=10**6, log_every=20, seed=0)
IDENTITY_MAX = 0.05  # mean |x − G(x)| in the gland of healthy slices; the gland is ≈ 0.6, lesion contrast ≈ 0.4
LESION_RATIO_MIN = 2.5  # lesion residual / rest-of-gland residual on lesion slices


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, loss history, held-out phantoms, their residual maps) after a short fit."""
    threads = torch.get_num_threads()
    # one thread: the same numbers on every machine, and no waiting for a descheduled thread on a busy one
    torch.set_num_threads(1)
    try:
        model, history = fit("fpgan", phantom_slices(64, SIZE, seed=0), tmp_path_factory.mktemp("fpgan"), SETTINGS,
                             CONFIG, show_progress=False, log=lambda _: None)
        test = phantom_slices(32, SIZE, seed=1)
        x = torch.from_numpy(test.images)
        residual = (x - model.reconstruct(x)).abs().numpy()
    finally:
        torch.set_num_threads(threads)
    return model, history, test, residual


def test_healthy_slices_pass_through_nearly_unchanged(trained):
    _, _, test, residual = trained
    healthy = test.labels == 0
    gland = test.masks[healthy] > 0
    identity = residual[healthy][gland].mean()
    torch.manual_seed(0)
    untrained = create("fpgan", 1, SIZE, CONFIG)
    x = torch.from_numpy(test.images[healthy])
    before = (x - untrained.reconstruct(x)).abs().numpy()[gland].mean()
    print(f"healthy-slice |x − G(x)| in the gland: {identity:.4f} after training, {before:.4f} untrained "
          f"(threshold {IDENTITY_MAX})")
    assert identity < IDENTITY_MAX
    assert identity < before / 2


def test_lesions_stand_out_in_the_anomaly_map(trained):
    _, _, test, residual = trained
    lesion_slices = test.labels == 1
    res, gland, lesion = residual[lesion_slices], test.masks[lesion_slices] > 0, test.lesions[lesion_slices] > 0
    inside, around = res[lesion].mean(), res[gland & ~lesion].mean()
    print(f"lesion slices |x − G(x)|: inside the lesion {inside:.4f}, rest of the gland {around:.4f}, "
          f"ratio {inside / around:.2f} (threshold {LESION_RATIO_MIN})")
    assert inside > LESION_RATIO_MIN * around


def test_loss_table_has_fixed_finite_columns(trained):
    _, history, _, _ = trained
    assert list(history.columns) == ["iteration", "d_loss", "d_adv", "d_cls", "d_gp", "g_adv", "g_cls", "g_rec",
                                     "g_id", "lr"]
    assert np.isfinite(history.to_numpy()).all()
    # the identity and cycle losses are what keep healthy tissue: they must have come down
    assert history["g_id"].iloc[-1] < history["g_id"].iloc[0]
    assert history["g_rec"].iloc[-1] < history["g_rec"].iloc[0]


def _batch(n: int = 4, size: int = SIZE, channels: int = 1):
    from adunet_lib.anomaly_models.base import SliceBatch

    return SliceBatch(torch.rand(n, channels, size, size), torch.arange(n) % 2, torch.ones(n, 1, size, size))


def test_generator_updates_every_n_critic_steps_and_lr_decays_from_the_midpoint():
    torch.manual_seed(0)
    model = create("fpgan", 1, SIZE, {**FixedPointGAN.smoke_config(), "n_critic": 3})
    batch = _batch()
    with pytest.raises(RuntimeError, match="configure"):
        model.train_step(batch)
    model.configure(total_iterations=12, epoch_length=3)
    rows = []
    for _ in range(12):
        generator_before = [p.clone() for p in model.generator.parameters()]
        rows.append(model.train_step(batch))
        after = model.generator.parameters()
        rows[-1]["g_changed"] = any(not torch.equal(a, b) for a, b in zip(generator_before, after))
        model.step += 1
    assert [r["g_changed"] for r in rows] == [(i + 1) % 3 == 0 for i in range(12)]
    assert all(r["g_id"] == 0.0 for r in rows[:2]) and rows[2]["g_id"] > 0 and rows[3]["g_id"] == rows[2]["g_id"]
    lrs = [r["lr"] for r in rows]  # the critic's rate after each iteration
    assert lrs[:5] == pytest.approx([1e-4] * 5)
    assert lrs[5:] == pytest.approx([1e-4 * (12 - t) / 6 for t in range(6, 13)])
    assert model.optimizers()["generator"].param_groups[0]["lr"] == pytest.approx(0.0)


@pytest.mark.parametrize(("size", "d_layers", "channels"), [(32, 3, 1), (48, 4, 3), (64, 6, 1), (128, 6, 2)])
def test_network_shapes(size, d_layers, channels):
    critic = Discriminator(channels, size, c_dim=2, conv_dim=4, d_layers=d_layers)
    x = torch.rand(3, channels, size, size) * 2 - 1
    patches, logits = critic(x)
    side = size // 2 ** d_layers
    assert patches.shape == (3, 1, side, side)
    assert logits.shape == (3, 2)
    generator = Generator(channels, c_dim=2, conv_dim=4, n_res_blocks=1)
    out = generator(x, torch.nn.functional.one_hot(torch.tensor([0, 1, 0]), 2))
    assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resize_upsampling_has_no_built_in_stripe_pattern(seed):
    """A flat slice through an untrained generator: the official transposed convolutions give even and
    odd pixels different kernel taps, so the change comes out with a period-2 pattern; ``resize``
    (nearest ×2, then 3×3) gives every interior pixel the same change."""
    flat = torch.full((1, 1, 96, 96), 0.2)
    target = torch.nn.functional.one_hot(torch.tensor([HEALTHY]), 2)
    inner = (slice(None), slice(None), slice(32, 64), slice(32, 64))  # beyond the reach of zero padding
    spread = {}
    for form in ("transposed", "resize"):
        torch.manual_seed(seed)
        generator = Generator(1, c_dim=2, conv_dim=8, n_res_blocks=1, upsampling=form)
        with torch.no_grad():
            spread[form] = float(generator(flat, target)[inner].std())
    assert spread["resize"] < 1e-5
    assert spread["transposed"] > 1e-3


def test_an_unknown_upsampling_is_refused_by_name():
    with pytest.raises(ValueError, match="upsampling must be one of transposed, resize, got 'bilinear'"):
        create("fpgan", 1, SIZE, FixedPointGAN.smoke_config() | {"upsampling": "bilinear"})


def test_reconstruct_translates_to_the_healthy_domain():
    torch.manual_seed(0)
    model = create("fpgan", 2, SIZE, FixedPointGAN.smoke_config())
    x = torch.rand(3, 2, SIZE, SIZE)
    model.generator.eval()
    with torch.no_grad():
        to = {c: (model.generator(x * 2 - 1, torch.nn.functional.one_hot(torch.full((3,), c), 2)) + 1) / 2
              for c in (0, 1)}
    out = model.reconstruct(x)
    torch.testing.assert_close(out, to[HEALTHY])
    assert not torch.allclose(out, to[1 - HEALTHY])


def test_too_many_critic_layers_are_refused_clearly():
    with pytest.raises(ValueError, match="d_layers=6.*image_size >= 64.*got 32"):
        Discriminator(1, 32, d_layers=6)
    with pytest.raises(ValueError, match="d_layers"):
        create("fpgan", 1, 32, {"d_layers": 6})
    create("fpgan", 1, 32, {"conv_dim": 4, "n_res_blocks": 1, "d_layers": 5})  # 32 / 2**5 = 1 is the limit
    with pytest.raises(ValueError, match="multiple of 4"):
        create("fpgan", 1, 30, {"conv_dim": 4, "n_res_blocks": 1, "d_layers": 3})


@pytest.fixture
def one_thread():
    """One thread: no waiting for a descheduled thread on a busy machine (tiny networks gain nothing from two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _ForwardCounter:
    """Calls and slices seen by each network, and the domain vectors given to the generator."""

    def __init__(self, model):
        self.calls = {"generator": 0, "discriminator": 0}
        self.slices = {"generator": 0, "discriminator": 0}
        self.domains: list[torch.Tensor] = []
        for key, net in model.networks().items():
            net.register_forward_hook(lambda module, args, out, key=key: self._seen(key, args))

    def _seen(self, key, args):
        self.calls[key] += 1
        self.slices[key] += len(args[0])
        if key == "generator":
            self.domains.append(args[1].detach().clone())

    def take(self) -> tuple[dict[str, tuple[int, int]], list[torch.Tensor]]:
        """({network: (calls, slices)}, the generator's domain inputs) since the last take."""
        out = {key: (self.calls[key], self.slices[key]) for key in self.calls}, self.domains
        self.calls, self.slices, self.domains = dict.fromkeys(self.calls, 0), dict.fromkeys(self.slices, 0), []
        return out


# The official solver, per real slice: a critic-only iteration runs G once (x → c_trg) and D three
# times (real, fake, interpolate); an iteration with a generator update also runs G four times (x →
# c_trg again, x → c_x, and both back) and D twice. Here x → c_trg is translated once per iteration
# (G's weights do not change in the critic's update), and real + fake share one critic call.
@pytest.mark.parametrize(("critic_fakes", "critic_only", "with_generator"), [
    (1, {"generator": (1, 1), "discriminator": (2, 3)}, {"generator": (2, 4), "discriminator": (3, 5)}),
    (2, {"generator": (1, 2), "discriminator": (2, 5)}, {"generator": (2, 4), "discriminator": (3, 7)}),
])
def test_forward_passes_per_iteration_are_the_official_solvers(critic_fakes, critic_only, with_generator, one_thread):
    torch.manual_seed(0)
    n = 6
    model = create("fpgan", 1, SIZE, {**FixedPointGAN.smoke_config(), "n_critic": 3, "critic_fakes": critic_fakes})
    model.configure(total_iterations=12, epoch_length=3)
    counter = _ForwardCounter(model)
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    batch = _batch(n)
    batch.labels = labels
    seen, targets = [], []
    for _ in range(6):
        model.train_step(batch)
        model.step += 1
        counts, domains = counter.take()
        seen.append({key: (calls, slices // n) for key, (calls, slices) in counts.items()})
        targets.append(domains[0][:n].argmax(1))  # the first translation of each iteration is x → c_trg
    assert seen == [critic_only, critic_only, with_generator] * 2
    # target domains: the batch's labels in random order (the solver's choice), not random domains
    assert all(sorted(t.tolist()) == sorted(labels.tolist()) for t in targets)
    assert any(not torch.equal(t, labels) for t in targets)


def test_critic_fakes_must_be_one_or_two():
    with pytest.raises(ValueError, match="critic_fakes"):
        create("fpgan", 1, SIZE, {**FixedPointGAN.smoke_config(), "critic_fakes": 3})
