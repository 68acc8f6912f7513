"""The Fixed-Point GAN networks (plain ``nn.Module`` s, no training logic).

Siddiquee et al. (2019) reuse StarGAN's networks: a generator that takes the image plus the target
domain tiled as extra channels (7×7 conv, two stride-2 downsamplings, residual blocks, two
transposed-convolution upsamplings, 7×7 conv) and a PatchGAN discriminator with two heads — real/fake
per patch and a domain classifier over the whole image. The generator is residual: its network
predicts a change ``δ`` and the translated image is ``tanh(x + δ)``, so "change nothing" is easy to
learn, which is what the fixed-point (identity) loss asks for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the generator's upsampling forms (``Generator``'s ``upsampling``); the first is the official code's
UPSAMPLING = ("transposed", "resize")

#: ``Discriminator.use_gemm``'s default: convolutions whose output is at most this many pixels a side
GEMM_MAX_SIDE = 4


def _norm(channels: int) -> nn.InstanceNorm2d:
    # Per-image statistics in training *and* evaluation: StarGAN's code tracks running statistics but
    # never switches its generator to eval mode, so per-image statistics are what its results used;
    # running averages would make reconstruct() differ from the translation the losses trained.
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class ResidualBlock(nn.Module):
    """Two 3×3 convolutions with instance norm and a skip connection (width kept)."""

    def __init__(self, channels: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class Generator(nn.Module):
    """Domain-conditioned residual generator: ``G(x, c) = tanh(x + δ(x, c))``.

    Args:
        in_channels: image channels (1, or 3 for T2W/ADC/hbv together).
        c_dim: number of domains (2: healthy, lesion); the one-hot target is tiled as input channels.
        conv_dim: width of the first convolution (doubled by each downsampling).
        n_res_blocks: residual blocks at 1/4 resolution.
        upsampling: ``"transposed"`` (StarGAN's and the official code's 4×4 stride-2 transposed
            convolutions) or ``"resize"``: nearest-neighbour ×2 then a 3×3 convolution (Odena et al.
            2016, "Deconvolution and checkerboard artifacts"). A stride-2 transposed convolution sums
            a different subset of its kernel into even and odd output pixels, so even a flat input
            comes out with a period-2 pattern, which training has to unlearn; the resize form treats
            every output pixel alike.

    Example:
        >>> g = Generator(in_channels=1, c_dim=2, conv_dim=8, n_res_blocks=1)
        >>> g(torch.zeros(2, 1, 32, 32), torch.eye(2)).shape
        torch.Size([2, 1, 32, 32])
    """

    #: total downsampling factor; image sides must be a multiple of it
    stride = 4

    def __init__(self, in_channels: int, c_dim: int = 2, conv_dim: int = 64, n_res_blocks: int = 6,
                 upsampling: str = "transposed"):
        super().__init__()
        if upsampling not in UPSAMPLING:
            raise ValueError(f"upsampling must be one of {', '.join(UPSAMPLING)}, got {upsampling!r}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels + c_dim, conv_dim, 7, padding=3, bias=False),
                                   _norm(conv_dim), nn.ReLU(inplace=True)]
        width = conv_dim
        for _ in range(2):
            layers += [nn.Conv2d(width, width * 2, 4, stride=2, padding=1, bias=False), _norm(width * 2),
                       nn.ReLU(inplace=True)]
            width *= 2
        layers += [ResidualBlock(width) for _ in range(n_res_blocks)]
        for _ in range(2):
            if upsampling == "transposed":
                up: list[nn.Module] = [nn.ConvTranspose2d(width, width // 2, 4, stride=2, padding=1, bias=False)]
            else:
                up = [nn.Upsample(scale_factor=2, mode="nearest"),
                      nn.Conv2d(width, width // 2, 3, padding=1, bias=False)]
            layers += [*up, _norm(width // 2), nn.ReLU(inplace=True)]
            width //= 2
        layers.append(nn.Conv2d(width, in_channels, 7, padding=3, bias=False))
        self.main = nn.Sequential(*layers)
        self.c_dim = c_dim

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Translate ``x`` (``(B, C, H, W)`` in [-1, 1]) to the domains ``c`` (``(B, c_dim)`` one-hot); in [-1, 1]."""
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"image sides must be multiples of {self.stride}, got {tuple(x.shape[-2:])}")
        tiled = c.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return torch.tanh(x + self.main(torch.cat([x, tiled], dim=1)))


class GemmConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, same state dict) that can compute itself as one matrix multiply.

    With :attr:`gemm` on, the input's patches are unfolded (im2col) and multiplied by the flattened
    weight: the same sums in another order. For the critic's last layers — few output pixels, many
    weights (1024 → 2048 channels on 4×4 → 2×2 at the paper's widths and 128²) — forward, backward and
    the gradient penalty's double backward together take 1.5–3× less time than with oneDNN's direct
    convolution on a CPU (3.0× in bf16, 1.9× in fp32 for that layer); on large feature maps it is slower.
    """

    gemm = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.gemm:
            return super().forward(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n, _, h, w = x.shape
        out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # (n, C·kh·kw, out_h·out_w)
        # one 2-D product (n·pixels, C·kh·kw) × (C·kh·kw, out): a batched matmul against the 2-D weight
        # would, in backward, broadcast the weight to every slice (a copy of n × its size)
        out = F.linear(cols.transpose(1, 2).reshape(n * out_h * out_w, -1), self.weight.flatten(1), self.bias)
        return out.reshape(n, out_h * out_w, -1).transpose(1, 2).reshape(n, -1, out_h, out_w)


class Discriminator(nn.Module):
    """PatchGAN critic with a real/fake map and domain-classification logits.

    Args:
        in_channels: image channels.
        image_size: input height = width; fixes the classifier's kernel (the last feature map's side).
        c_dim: number of domains.
        conv_dim: width of the first convolution (doubled by each of the following ones).
        d_layers: stride-2 4×4 convolutions; ``image_size // 2 ** d_layers`` must be at least 1.

    Raises:
        ValueError: when ``d_layers`` halvings leave nothing of the image.

    Example:
        >>> d = Discriminator(in_channels=1, image_size=32, c_dim=2, conv_dim=8, d_layers=3)
        >>> [t.shape for t in d(torch.zeros(2, 1, 32, 32))]
        [torch.Size([2, 1, 4, 4]), torch.Size([2, 2])]
    """

    def __init__(self, in_channels: int, image_size: int, c_dim: int = 2, conv_dim: int = 64, d_layers: int = 6):
        super().__init__()
        side = image_size // 2 ** d_layers
        if d_layers < 1 or side < 1:
            raise ValueError(f"d_layers={d_layers} stride-2 convolutions need image_size >= {2 ** max(d_layers, 1)}, "
                             f"got {image_size}; use d_layers <= {max(int(image_size).bit_length() - 1, 1)} "
                             f"for {image_size}² images")
        layers: list[nn.Module] = []
        width_in, width = in_channels, conv_dim
        for _ in range(d_layers):
            layers += [GemmConv2d(width_in, width, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            width_in, width = width, width * 2
        self.main = nn.Sequential(*layers)
        self.real_fake = nn.Conv2d(width_in, 1, 3, padding=1, bias=False)
        self.domain = nn.Conv2d(width_in, c_dim, side, bias=False)
        self.image_size = image_size

    def use_gemm(self, max_side: int = GEMM_MAX_SIDE) -> list[int]:
        """Compute the stride-2 convolutions whose output is at most ``max_side`` pixels a side as matrix
        multiplies (:class:`GemmConv2d`); returns those layers' indices (0 = the first)."""
        chosen = []
        for k, conv in enumerate(m for m in self.main if isinstance(m, GemmConv2d)):
            conv.gemm = self.image_size // 2 ** (k + 1) <= max_side
            if conv.gemm:
                chosen.append(k)
        return chosen

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, S, S)`` critic scores per patch and ``(B, c_dim)`` domain logits for ``x`` in [-1, 1]."""
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            # the classifier's kernel is sized for image_size: another size would give a logit map
            raise ValueError(f"the discriminator was built for {self.image_size}² images, got {tuple(x.shape[-2:])}")
        h = self.main(x)
        return self.real_fake(h), self.domain(h).flatten(1)
