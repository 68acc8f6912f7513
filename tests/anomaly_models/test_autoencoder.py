"""The autoencoders' bottlenecks: ``bottleneck_design: baur`` builds Baur et al.'s (their published
code), the default ``adunet`` stays the one the demo was made with."""

import pytest
import torch
from torch import nn

from adunet_lib.anomaly_models import create
from adunet_lib.anomaly_models.base import SliceBatch


def layers(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, kind)]


def test_baurs_dense_bottleneck_narrows_to_16_maps_and_drops_out_after_each_dense_layer():
    model = create("dense_ae", 1, 128, {"bottleneck_design": "baur"})  # Baur's 128² slices, 8×8 at the bottom
    bottleneck = model.net.bottleneck
    convs, linears = layers(bottleneck, nn.Conv2d), layers(bottleneck, nn.Linear)
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(128, 16, (1, 1)), (16, 128, (1, 1))]
    assert [(f.in_features, f.out_features) for f in linears] == [(16 * 8 * 8, 128), (128, 16 * 8 * 8)]
    assert [d.p for d in layers(bottleneck, nn.Dropout)] == [0.2, 0.2]
    code = model.net.encoder(torch.rand(2, 1, 128, 128))
    model.net.eval()
    assert torch.equal(bottleneck(code), bottleneck(code))
    model.net.train()  # dropout acts in training only
    assert not torch.equal(bottleneck(code), bottleneck(code))


def test_baurs_spatial_bottleneck_keeps_the_encoders_128_maps_where_adunets_narrows_to_16():
    baur = create("spatial_ae", 1, 128, {"bottleneck_design": "baur"})
    assert sum(p.numel() for p in baur.net.bottleneck.parameters()) == 0  # nothing narrower than the encoder
    code = baur.net.encoder(torch.rand(2, 1, 128, 128))
    baur.net.eval()
    assert code.shape == (2, 128, 8, 8) and torch.equal(baur.net.bottleneck(code), code)
    ours = create("spatial_ae", 1, 128, {})
    assert [c.out_channels for c in layers(ours.net.bottleneck, nn.Conv2d)] == [16, 128]


@pytest.mark.parametrize("name", ["dense_ae", "spatial_ae"])
def test_baurs_bottlenecks_train(name):
    model = create(name, 3, 32, {"filters": (8, 16), "latent_dim": 16, "bottleneck_design": "baur"})
    model.configure(total_iterations=10, epoch_length=5)
    batch = SliceBatch(torch.rand(4, 3, 32, 32), torch.zeros(4, dtype=torch.long), torch.ones(4, 3, 32, 32))
    losses = [model.train_step(batch)["loss"] for _ in range(10)]
    assert losses[-1] < losses[0]


def test_an_unknown_bottleneck_design_is_refused_by_name():
    with pytest.raises(ValueError, match="bottleneck_design must be one of adunet, baur, not 'vae'"):
        create("dense_ae", 1, 32, {"filters": (8, 16), "bottleneck_design": "vae"})
