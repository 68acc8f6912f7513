"""The official Fixed-Point GAN's training iteration, timed on this machine, next to adunet's ``fpgan``.

Nothing of the official code is copied here: :func:`load_networks` imports ``model.py`` from a checkout
the user gives (``git clone https://github.com/mahfuzmohammad/Fixed-Point-GAN``), and
:class:`ReferenceStep` follows the algorithm of its ``solver.py`` ``train()`` loop:

* critic, every iteration: D on the real batch (adversarial + domain loss), one translation
  G(x, c_trg) per real slice with targets = the batch's labels permuted (made without a graph for the
  critic, as ``x_fake.detach()``), D on the fakes, the gradient penalty on real/fake interpolates
  (a double backward), one Adam step;
* generator, every ``n_critic``-th iteration: G(x, c_trg) again with a graph, D on it, G(x, c_org)
  (identity), D on it, both translated back to the original domain, one Adam step over the sum.

The networks are the official ones at the paper's widths (64 filters, 6 residual blocks, 6 critic
layers, instance norm with running statistics); the generator's output is a residual
``tanh(x + G(x, c))`` as in the solver. Its generator takes 3 channels (``3 + c_dim`` inputs), so the
comparison runs at 3 channels (adunet's ``channels: all``).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def load_networks(checkout: str | Path):
    """``(Generator, Discriminator)`` classes of the official code's ``model.py`` in ``checkout``."""
    path = Path(checkout).expanduser() / "model.py"
    if not path.is_file():
        sys.exit(f"--reference {checkout}: no model.py there; give a checkout of "
                 f"https://github.com/mahfuzmohammad/Fixed-Point-GAN")
    spec = importlib.util.spec_from_file_location("fixed_point_gan_reference_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Generator, module.Discriminator


class ReferenceStep:
    """One training iteration of the official solver (BRATS-style: one-hot healthy/diseased domains)."""

    def __init__(self, checkout: str | Path, image_size: int, batch_size: int, device: torch.device,
                 conv_dim: int = 64, n_res_blocks: int = 6, d_layers: int = 6, n_critic: int = 5,
                 lambda_cls: float = 1.0, lambda_rec: float = 10.0, lambda_id: float = 10.0, lambda_gp: float = 10.0):
        generator, discriminator = load_networks(checkout)
        self.c_dim = 2
        self.G = generator(conv_dim, self.c_dim, n_res_blocks).to(device)
        self.D = discriminator(image_size, conv_dim, self.c_dim, d_layers).to(device)
        self.g_opt = torch.optim.Adam(self.G.parameters(), 1e-4, betas=(0.5, 0.999))
        self.d_opt = torch.optim.Adam(self.D.parameters(), 1e-4, betas=(0.5, 0.999))
        self.n_critic, self.device = n_critic, device
        self.lambdas = (lambda_cls, lambda_rec, lambda_id, lambda_gp)
        self.x = torch.rand(batch_size, 3, image_size, image_size, device=device) * 2 - 1
        self.labels = (torch.arange(batch_size) >= batch_size - batch_size // 2).long().to(device)
        self.iteration = 0

    def parameters_m(self) -> tuple[float, float]:
        return (sum(p.numel() for p in self.G.parameters()) / 1e6, sum(p.numel() for p in self.D.parameters()) / 1e6)

    def _penalty(self, x_real: torch.Tensor, x_fake: torch.Tensor) -> torch.Tensor:
        alpha = torch.rand(x_real.size(0), 1, 1, 1, device=self.device)
        x_hat = (alpha * x_real + (1 - alpha) * x_fake).requires_grad_(True)
        out, _ = self.D(x_hat)
        grad = torch.autograd.grad(out, x_hat, torch.ones_like(out), retain_graph=True, create_graph=True)[0]
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()

    def step(self) -> None:
        lambda_cls, lambda_rec, lambda_id, lambda_gp = self.lambdas
        x, label_org = self.x, self.labels
        label_trg = label_org[torch.randperm(len(label_org)).to(self.device)]
        c_org = F.one_hot(label_org, self.c_dim).float()
        c_trg = F.one_hot(label_trg, self.c_dim).float()

        out_src, out_cls = self.D(x)
        d_real, d_cls = -out_src.mean(), F.cross_entropy(out_cls, label_org)
        x_fake = torch.tanh(x + self.G(x, c_trg))
        out_src, _ = self.D(x_fake.detach())
        d_fake = out_src.mean()
        d_loss = d_real + d_fake + lambda_cls * d_cls + lambda_gp * self._penalty(x, x_fake.detach())
        self.d_opt.zero_grad()
        d_loss.backward()
        self.d_opt.step()

        if (self.iteration + 1) % self.n_critic == 0:
            x_fake = torch.tanh(x + self.G(x, c_trg))
            out_src, out_cls = self.D(x_fake)
            g_fake, g_cls = -out_src.mean(), F.cross_entropy(out_cls, label_trg)
            delta_id = self.G(x, c_org)
            x_fake_id = torch.tanh(x + delta_id)
            out_src_id, out_cls_id = self.D(x_fake_id)
            g_fake_id, g_cls_id = -out_src_id.mean(), F.cross_entropy(out_cls_id, label_org)
            g_id = (x - x_fake_id).abs().mean()
            g_rec = (x - torch.tanh(x_fake + self.G(x_fake, c_org))).abs().mean()
            g_rec_id = (x - torch.tanh(x_fake_id + self.G(x_fake_id, c_org))).abs().mean()
            g_loss = (g_fake + lambda_rec * g_rec + lambda_cls * g_cls
                      + g_fake_id + lambda_rec * g_rec_id + lambda_cls * g_cls_id + lambda_id * g_id)
            self.g_opt.zero_grad()
            g_loss.backward()
            self.g_opt.step()
        self.iteration += 1

    def seconds_per_iteration(self, cycles: int) -> float:
        """Mean seconds per iteration over ``cycles`` whole cycles of ``n_critic`` iterations (one cycle of warm-up)."""
        for _ in range(self.n_critic):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(cycles * self.n_critic):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / (cycles * self.n_critic)
