"""Wolleb et al.'s guided diffusion trained by their own code on adunet's slices, for ``bench_parity.py --model ddpm``
(:func:`train_reference_ddpm`) and ``--swap`` (:func:`train_swapped`: each code's noise predictor paired
with either code's classifier).

Nothing of the reference is copied here: :func:`load_reference` imports the ``guided_diffusion`` package
of a checkout the user gives (``git clone https://github.com/JuliaWolleb/diffusion-anomaly``), and
:func:`train_reference_ddpm` drives it as their scripts do:

* networks: their ``UNetModel`` (the noise predictor, with a learned-variance head: ``--learn_sigma True``,
  ``--num_heads 1``, ``--use_scale_shift_norm False``, ``--class_cond`` as adunet's ``class_conditional``)
  and their ``EncoderUNetModel`` classifier (``--classifier_pool attention``,
  ``--classifier_resblock_updown True``, ``--classifier_use_scale_shift_norm True``), at adunet's widths
  (first width × multipliers, residual blocks per level, attention sides) — their README's flags for
  everything else;
* DDPM step (``scripts/image_train.py``'s ``TrainLoop``): t uniform over T, their
  ``GaussianDiffusion.training_losses`` (ε MSE plus the variational term of the learned variance), AdamW
  with weight decay 0 at adunet's learning rate, no EMA in the translation (their README samples from
  ``model.pt``);
* classifier step (``scripts/classifier_train.py``): the batch noised by their ``q_sample`` at t uniform
  below their sampler's ``maxt`` (adunet's ``classifier_max_t``, or T), cross-entropy, AdamW;
* translation (``scripts/classifier_sample_known.py``): their ``ddim_sample_loop_known`` (its body: the
  slice noised to t = 0 by ``q_sample``, then their ``ddim_sample_loop_progressive``, one slice at a time
  as their ``--batch_size 1``; called directly because the wrapper draws a 4th channel) — DDIM-encode to
  the noise level, then DDIM back with their ``condition_score`` guidance by the classifier's gradient
  towards the healthy label at adunet's ``guidance_scale`` — on a diffusion respaced so that it visits
  adunet's ``ddim_steps`` levels up to ``noise_level`` (their recipe: all 1000, ``ddim1000``, L = 500).

Their HEAD does not import as published: ``guided_diffusion/unet.py`` line 901 misses a ``)`` (their
issues #17 and #23); the loader says so and the user closes it in their checkout. Three more things are
adapted, each because the reference cannot run otherwise here; none changes its algorithm:

* their modules import ``visdom`` (and open a connection to a Visdom server at import) and ``blobfile``
  for logging and drawing only: where those packages are missing, empty stand-ins are registered;
* their ``normalization`` is GroupNorm with 32 groups, which a 16-channel layer cannot take: the
  networks are built with adunet's ``norm_num_groups``;
* their guided DDIM step gives the classifier the *respaced* timestep index (their ``condition_score``
  is not wrapped by ``SpacedDiffusion``); at their ``ddim1000`` that index is the timestep itself, so
  the classifier here is given the timestep the index stands for, as in their recipe.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _stand_in(name: str, **attrs) -> None:
    if name in sys.modules:
        return
    try:
        __import__(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module


class _NoVisdom:
    """Accepts every Visdom call the reference makes and draws nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def load_reference(checkout: str | Path, norm_num_groups: int) -> types.SimpleNamespace:
    """The reference's modules (``gaussian_diffusion``, ``respace``, ``unet``, ``resample``) from ``checkout``."""
    root = Path(checkout).expanduser()
    if not (root / "guided_diffusion" / "gaussian_diffusion.py").is_file():
        sys.exit(f"--reference {checkout}: no guided_diffusion/gaussian_diffusion.py there; give a checkout of "
                 f"https://github.com/JuliaWolleb/diffusion-anomaly")
    _stand_in("visdom", Visdom=_NoVisdom)
    _stand_in("blobfile")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from guided_diffusion import gaussian_diffusion, resample, respace, unet  # noqa: PLC0415
    except SyntaxError as err:
        # their HEAD (509643c) lost a ')' in EncoderUNetModel.forward: issues #17 and #23 of their repository
        sys.exit(f"--reference {checkout}: {Path(err.filename or '?').name} line {err.lineno} does not parse "
                 f"({err.msg}); in their unet.py the line reads 'h = self.middle_block(h, emb' — close it with ')' "
                 f"(github.com/JuliaWolleb/diffusion-anomaly/issues/17) and run again")

    class GroupNorm(torch.nn.GroupNorm):
        # their GroupNorm32 computes in float32; so does this on the CPU
        def forward(self, x):
            return super().forward(x.float()).type(x.dtype)

    unet.normalization = lambda channels: GroupNorm(min(norm_num_groups, channels), channels)
    return types.SimpleNamespace(gd=gaussian_diffusion, respace=respace, unet=unet, resample=resample)


def _quiet(fn, *args, **kwargs):
    """Call ``fn`` with the reference's diagnostic prints (every sampling step prints) sent nowhere."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def build(ref, in_channels: int, image_size: int, config) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Their noise predictor and classifier at adunet's widths (``config``: a resolved ``DDPMConfig``)."""

    def mult(widths):
        return tuple(w // widths[0] for w in widths)

    def attention(sides):  # their attention_resolutions hold downsampling factors
        return tuple(image_size // int(s) for s in sides)

    model = ref.unet.UNetModel(
        image_size=image_size, in_channels=in_channels, model_channels=config.channels[0],
        out_channels=2 * in_channels, num_res_blocks=config.num_res_blocks,
        attention_resolutions=attention(config.attention_resolutions), dropout=0.0,
        channel_mult=mult(config.channels), num_classes=2 if config.class_conditional else None,
        num_heads=1, use_scale_shift_norm=False, resblock_updown=False)
    classifier = ref.unet.EncoderUNetModel(
        image_size=image_size, in_channels=in_channels, model_channels=config.classifier_channels[0],
        out_channels=2, num_res_blocks=config.classifier_num_res_blocks,
        attention_resolutions=attention(config.classifier_attention_resolutions),
        channel_mult=mult(config.classifier_channels), num_head_channels=64, use_scale_shift_norm=True,
        resblock_updown=True, pool="attention")
    return model, classifier


def diffusion(ref, steps: int, respacing: str = ""):
    """Their ``create_gaussian_diffusion`` with the README's flags (linear schedule, learned σ, ε target)."""
    gd = ref.gd
    betas = gd.get_named_beta_schedule("linear", steps)
    use = ref.respace.space_timesteps(steps, respacing or [steps])
    return _quiet(ref.respace.SpacedDiffusion, use_timesteps=use, betas=betas,
                  model_mean_type=gd.ModelMeanType.EPSILON, model_var_type=gd.ModelVarType.LEARNED_RANGE,
                  loss_type=gd.LossType.MSE, rescale_timesteps=False)


def respaced(ref, config) -> tuple[object, int]:
    """(a diffusion whose respaced levels are ``noise_level / ddim_steps`` timesteps apart, their
    ``noise_level`` argument for it). Their ``ddim_sample_loop_known(noise_level=n)`` DDIM-encodes from
    respaced level 1 to level n (n − 1 steps: it treats the slice as level 1) and decodes with the steps of
    levels n − 2 … 0 (n − 1 steps); n = ``ddim_steps`` makes the encoding end at adunet's L, in one step
    fewer each way than adunet's ``ddim_steps`` (their loop's own counting, kept)."""
    stride = config.noise_level / config.ddim_steps
    count = int(round(config.timesteps / stride))
    spaced = diffusion(ref, config.timesteps, f"ddim{count}")
    levels = spaced.timestep_map
    if len(levels) < config.ddim_steps + 1 or levels[config.ddim_steps] != config.noise_level:
        raise ValueError(f"noise_level {config.noise_level} in {config.ddim_steps} DDIM steps: the reference's "
                         f"even respacing of {config.timesteps} steps does not land on it ({levels[:12]}…)")
    return spaced, config.ddim_steps


class ReferenceDDPM:
    """Their noise predictor and classifier at adunet's widths, trained and sampled by their code.

    ``step(batch)`` is one iteration of both their training scripts; ``reconstruct(x)`` their guided
    DDIM translation; ``eps_fn()`` and ``classifier_fn()`` the trained networks as adunet's sampler calls
    them (``fn(x_t, t)``), for pairing them with adunet's networks (``bench_parity.py --swap``)."""

    def __init__(self, checkout: str, in_channels: int, image_size: int, config, device: str):
        c = self.config = config
        self.ref = ref = load_reference(checkout, c.norm_num_groups)
        self.model, self.classifier = (net.to(device) for net in build(ref, in_channels, image_size, c))
        self.in_channels, self.device = in_channels, device
        self.full = diffusion(ref, c.timesteps)
        self.sampler_t = ref.resample.create_named_schedule_sampler("uniform", self.full, maxt=c.timesteps)
        self.sampler_c = ref.resample.create_named_schedule_sampler("uniform", self.full,
                                                                    maxt=c.classifier_max_t or c.timesteps)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=c.lr, weight_decay=0.0)
        self.opt_c = torch.optim.AdamW(self.classifier.parameters(), lr=c.classifier_lr, weight_decay=0.0)
        self.spaced, self.noise_level = respaced(ref, c)
        self.timestep_map = torch.tensor(self.spaced.timestep_map, device=device)
        self.steps = 0

    def step(self, batch) -> None:
        """One DDPM step (their ``TrainLoop``) and one classifier step (their ``classifier_train.py``)."""
        c, device = self.config, self.device
        x0 = batch.images.to(device) * 2 - 1
        labels = batch.labels.to(device).long()
        learn = torch.ones_like(labels, dtype=torch.bool) if c.class_conditional else labels == 0
        self.model.train()
        if learn.any():
            t, weights = self.sampler_t.sample(int(learn.sum()), device)
            kwargs = {"y": labels[learn]} if c.class_conditional else {}
            losses, _ = self.full.training_losses(self.model, x0[learn], t, model_kwargs=kwargs)  # (terms, output)
            self.opt.zero_grad(set_to_none=True)
            (losses["loss"] * weights).mean().backward()
            self.opt.step()
        if c.classifier_iterations <= 0 or self.steps < c.classifier_iterations:
            self.classifier.train()
            t, _ = self.sampler_c.sample(len(x0), device)
            logits = self.classifier(self.full.q_sample(x0, t), timesteps=t)
            self.opt_c.zero_grad(set_to_none=True)
            F.cross_entropy(logits, labels).backward()
            self.opt_c.step()
        self.steps += 1

    def eval(self) -> None:
        self.model.eval()
        self.classifier.eval()

    def eps_fn(self):
        """Their noise predictor as ``eps = fn(x_t, t)`` at the healthy label (ε half of its output)."""

        def fn(x, t):
            y = torch.zeros(len(x), dtype=torch.long, device=x.device) if self.config.class_conditional else None
            return self.model(x, t, y)[:, :self.in_channels]

        return fn

    def classifier_fn(self):
        """Their classifier as ``logits = fn(x_t, t)``."""
        return lambda x, t: self.classifier(x, timesteps=t)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Their guided DDIM translation of ``x`` ((N, C, S, S) in [0, 1]), one slice at a time as their
        ``--batch_size 1`` (``range(t)`` of a one-element tensor)."""
        c, device, timestep_map = self.config, self.device, self.timestep_map

        def cond_fn(x, t, y=None):
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                log_probs = F.log_softmax(self.classifier(x_in, timestep_map[t]), dim=-1)
                grad = torch.autograd.grad(log_probs[range(len(x_in)), y.view(-1)].sum(), x_in)[0]
            return grad, grad * c.guidance_scale

        def model_fn(x, t, y=None):
            return self.model(x, t, y if c.class_conditional else None)

        out = []
        for start in range(len(x)):
            img = torch.from_numpy(x[start:start + 1]).to(device) * 2 - 1
            healthy = torch.zeros(len(img), dtype=torch.long, device=device)
            # their ddim_sample_loop_known, less its Visdom drawings (which index a 4th channel): the slice
            # noised to t = 0 by q_sample, then their progressive DDIM encode/decode
            start_x = self.spaced.q_sample(img, torch.zeros(1, dtype=torch.long, device=device),
                                           noise=torch.randn_like(img))
            steps = _quiet(list, self.spaced.ddim_sample_loop_progressive(
                model_fn, tuple(img.shape), time=self.noise_level, noise=start_x, clip_denoised=c.clip_denoised,
                cond_fn=cond_fn, model_kwargs={"y": healthy}, device=device))
            out.append(((steps[-1]["sample"].clamp(-1, 1) + 1) / 2).detach().cpu().numpy())
        return np.concatenate(out)


def resolved(config: dict, in_channels: int, image_size: int):
    """adunet's resolved ``DDPMConfig`` for ``config`` (the widths and settings both codes are given)."""
    from adunet_lib.anomaly_models import create  # noqa: PLC0415

    return create("ddpm", in_channels, image_size, config, device="meta").config


def train_reference_ddpm(checkout: str, train, config: dict, batch: int, seed: int, total: int,
                         checkpoints: list[int], held, kernel: int, device: str,
                         channels: list[int]) -> list[dict]:
    """Train their networks by their algorithm on ``train``'s batches (adunet's sampler, seed and budget)
    and score G(x) at each checkpoint with ``held`` (``bench_parity.HeldOut``)."""
    from bench_parity import channel_subset  # noqa: PLC0415

    from adunet_lib.anomaly_models.data import BatchSampler  # noqa: PLC0415

    size = int(train.images.shape[-1])
    c = resolved(config, len(channels), size)
    torch.manual_seed(seed)
    ref = ReferenceDDPM(checkout, len(channels), size, c, device)
    batches = BatchSampler(train, batch, balanced=True, seed=seed, flip=False)
    rows, seconds = [], 0.0
    for step in range(1, total + 1):
        begin = time.perf_counter()
        ref.step(channel_subset(batches.next(), channels))
        seconds += time.perf_counter() - begin
        if step in checkpoints:
            ref.eval()
            rows += [{"iterations": step, "train_minutes": seconds / 60, **r}
                     for r in held.score(ref.reconstruct, kernel, channels)]
    return rows


def train_swapped(checkout: str, train, config: dict, batch: int, seed: int, total: int, checkpoints: list[int],
                  held, kernel: int, device: str, channels: list[int]) -> list[dict]:
    """adunet's DDPM and classifier and the reference's, trained side by side on the same batches; at each
    checkpoint every pairing of a noise predictor with a classifier translates through adunet's guided
    DDIM (and the reference's pair through their own sampler too): which network makes the difference.
    Rows are named ``ddpm <code> + classifier <code>`` (``, their sampler`` for the last)."""
    from bench_parity import channel_subset  # noqa: PLC0415

    from adunet_lib.anomaly_models import create  # noqa: PLC0415
    from adunet_lib.anomaly_models.data import BatchSampler  # noqa: PLC0415
    from adunet_lib.anomaly_models.diffusion.sampling import HEALTHY  # noqa: PLC0415

    size = int(train.images.shape[-1])
    torch.manual_seed(seed)
    ours = create("ddpm", len(channels), size, config, device=device)
    ours.configure(total, 1)
    c = ours.config
    ref = ReferenceDDPM(checkout, len(channels), size, c, device)
    batches_ours = BatchSampler(train, batch, balanced=True, seed=seed, flip=False)
    batches_ref = BatchSampler(train, batch, balanced=True, seed=seed, flip=False)
    rows = []
    for step in range(1, total + 1):
        ours.train()
        ours.train_step(channel_subset(batches_ours.next(), channels).to(ours.device))
        ours.step += 1
        ref.step(channel_subset(batches_ref.next(), channels))
        if step not in checkpoints:
            continue
        for net in ours.networks().values():
            net.eval()
        ref.eval()
        eps = {"adunet": ours._ddpm(HEALTHY), "reference": ref.eps_fn()}
        classifiers = {"adunet": ours._run(ours.classifier), "reference": ref.classifier_fn()}
        for e, eps_fn in eps.items():
            for k, classifier in classifiers.items():

                def recon(x: np.ndarray, eps_fn=eps_fn, classifier=classifier) -> np.ndarray:
                    return np.concatenate([ours.translate(torch.from_numpy(x[start:start + 16]).to(device), eps_fn,
                                                          classifier).cpu().numpy() for start in range(0, len(x), 16)])

                rows += [{"iterations": step, "pairing": f"ddpm {e} + classifier {k}", **r}
                         for r in held.score(recon, kernel, channels)]
        with torch.random.fork_rng():  # their sampler draws noise: it must not move the training that follows
            rows += [{"iterations": step, "pairing": "ddpm reference + classifier reference, their sampler", **r}
                     for r in held.score(ref.reconstruct, kernel, channels)]
    return rows


if __name__ == "__main__":  # pragma: no cover - a module of bench_parity.py
    sys.exit("run benchmarks/bench_parity.py --model ddpm --reference CHECKOUT …")
