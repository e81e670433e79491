"""StyleGAN2 networks: FIR resampling against scipy's direct convolution, modulation/demodulation, noise modes,
truncation, the W+ layout, style mixing, the discriminator's minibatch standard deviation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from facegen.nets.stylegan import (
    Discriminator,
    Generator,
    MappingNetwork,
    MinibatchStd,
    SynthesisLayer,
    modulated_conv2d,
)
from facegen.nets.upfirdn import conv2d_down, conv2d_up, downsample2d, fir_filter, upsample2d

SMALL = {"channel_base": 256, "channel_max": 32}


def tiny_generator(resolution: int = 16, **kwargs) -> Generator:
    return Generator(resolution, 3, z_dim=16, w_dim=16, mapping_layers=2, **SMALL, **kwargs)


def _zero_inserted(image: np.ndarray) -> np.ndarray:
    up = np.zeros((image.shape[0] * 2, image.shape[1] * 2))
    up[::2, ::2] = image
    return up


def test_fir_upsampling_equals_zero_insertion_and_a_direct_convolution():
    image = np.random.default_rng(0).normal(size=(6, 7))
    taps = np.array([1, 3, 3, 1.0])
    kernel = np.outer(taps, taps) / 64 * 4  # gain up² keeps the mean
    full = convolve2d(_zero_inserted(image), kernel, mode="full")  # (12 + 3, 14 + 3)
    expected = full[1:-2, 1:-2]  # StyleGAN2's padding: 2 before, 1 after, minus the filter's 3
    out = upsample2d(torch.from_numpy(image).float()[None, None], fir_filter())[0, 0].numpy()
    assert out.shape == (12, 14)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    constant = upsample2d(torch.ones(1, 1, 6, 6), fir_filter())[0, 0]
    assert torch.allclose(constant[2:-2, 2:-2], torch.ones(8, 8))  # interior keeps the value


def test_fir_downsampling_equals_a_direct_convolution_then_every_other_pixel():
    image = np.random.default_rng(1).normal(size=(8, 10))
    taps = np.array([1, 3, 3, 1.0])
    full = convolve2d(image, np.outer(taps, taps) / 64, mode="full")  # (8 + 3, 10 + 3)
    expected = full[2:-2, 2:-2][::2, ::2]  # padding 1 each side: the valid part starts at 3 - 1
    out = downsample2d(torch.from_numpy(image).float()[None, None], fir_filter())[0, 0].numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_upsampling_convolution_equals_fir_upsampling_then_the_flipped_kernel():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, generator=generator)
    weight = torch.randn(4, 3, 3, 3, generator=generator)
    f = fir_filter()
    fused = conv2d_up(x, weight, f)
    # transposed convolution + FIR == zero insertion and the FIR filter (padded once, at the start), then a valid
    # 3x3 convolution with the flipped kernel (conv2d correlates)
    from facegen.nets.upfirdn import upfirdn2d

    blurred = upfirdn2d(x, f, up=2, padding=(3, 2, 3, 2), gain=4)
    direct = torch.nn.functional.conv2d(blurred, weight.flip((2, 3)))
    assert fused.shape == (2, 4, 10, 10)
    assert torch.allclose(fused, direct, atol=1e-5)
    grouped = conv2d_up(x.reshape(1, 6, 5, 5), torch.cat([weight, weight * 2]), f, groups=2)
    assert torch.allclose(grouped.reshape(2, 4, 10, 10)[1], 2 * conv2d_up(x[1:], weight, f)[0], atol=1e-5)


def test_downsampling_convolution_equals_blur_convolution_and_subsampling():
    x = torch.randn(2, 3, 8, 8)
    weight = torch.randn(4, 3, 3, 3)
    from facegen.nets.upfirdn import upfirdn2d

    f = fir_filter()
    expected = torch.nn.functional.conv2d(upfirdn2d(x, f, padding=(2, 2, 2, 2)), weight)[..., ::2, ::2]
    assert torch.allclose(conv2d_down(x, weight, f), expected, atol=1e-5)
    one = torch.randn(4, 3, 1, 1)
    assert torch.allclose(
        conv2d_down(x, one, f), torch.nn.functional.conv2d(downsample2d(x, f), one), atol=1e-5
    )


def test_demodulation_normalises_each_output_channel_and_ignores_the_style_scale():
    x, weight = torch.randn(2, 4, 6, 6), torch.randn(5, 4, 3, 3)
    styles = torch.rand(2, 4) + 0.5
    demodulated = modulated_conv2d(x, weight, styles, demodulate=True)
    assert torch.allclose(modulated_conv2d(x, weight, styles * 7.0, demodulate=True), demodulated, atol=1e-5)
    plain = modulated_conv2d(x, weight, styles, demodulate=False)
    assert torch.allclose(modulated_conv2d(x, weight, styles * 7.0, demodulate=False), plain * 7, atol=1e-4)
    # per sample and output channel, the modulated weights were scaled to unit L2 norm
    effective = weight.unsqueeze(0) * styles[:, None, :, None, None]
    norms = effective.square().sum((2, 3, 4)).sqrt()  # (B, O)
    undemodulated = modulated_conv2d(x, weight, styles, demodulate=False)
    assert torch.allclose(demodulated * norms[..., None, None], undemodulated, atol=1e-4)
    # fused (grouped) and unfused (scaled activations) agree, with and without upsampling
    assert torch.allclose(modulated_conv2d(x, weight, styles, True, fused=False), demodulated, atol=1e-5)
    f = fir_filter()
    up = modulated_conv2d(x, weight, styles, True, up=f)
    assert up.shape == (2, 5, 12, 12)
    assert torch.allclose(modulated_conv2d(x, weight, styles, True, up=f, fused=False), up, atol=1e-5)


def test_noise_modes_random_const_and_none():
    layer = SynthesisLayer(4, 4, w_dim=6, resolution=8)
    x, w = torch.randn(2, 4, 8, 8), torch.randn(2, 6)
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
        layer.bias.fill_(10.0)  # stay on the linear side of the leaky ReLU
    none, const = layer(x, w, "none"), layer(x, w, "const")
    assert torch.allclose((const - none) / np.sqrt(2), layer.noise_const * 0.5, atol=1e-5)
    assert torch.equal(const, layer(x, w, "const"))
    first, second = layer(x, w, "random"), layer(x, w, "random")
    assert not torch.allclose(first, second)
    assert not torch.allclose(first[0] - none[0], first[1] - none[1])  # noise differs per sample


def test_truncation_lerps_towards_w_avg_for_the_first_layers_only():
    generator = tiny_generator(16)
    for _ in range(20):
        generator.mapping(torch.randn(64, 16))  # training mode: w_avg tracks the mean w
    assert generator.mapping.w_avg.abs().sum() > 0
    generator.eval()
    z = torch.randn(4, 16)
    full, half = generator.ws(z), generator.ws(z, 0.5)
    assert torch.allclose(half, generator.mapping.w_avg.lerp(full, 0.5), atol=1e-6)
    cut = generator.ws(z, 0.5, cutoff=3)
    assert torch.allclose(cut[:, :3], half[:, :3]) and torch.allclose(cut[:, 3:], full[:, 3:])
    mapping = MappingNetwork(8, 8, 2).eval()
    before = mapping.w_avg.clone()
    mapping(torch.randn(4, 8))
    assert torch.equal(mapping.w_avg, before)  # eval: no update


def test_w_plus_layout_gives_each_block_its_vectors():
    generator = tiny_generator(32).eval()
    assert generator.num_ws == 2 * 5 - 2
    ws = generator.ws(torch.randn(2, 16)).detach().requires_grad_()
    generator.synthesis(ws, "const").square().sum().backward()
    assert (ws.grad.abs().sum((0, 2)) > 0).all()  # every w is used
    # the last w only drives the final toRGB: the image changes only through it
    ws2 = ws.detach().clone()
    ws2[:, -1] += 1.0
    base = generator.synthesis(ws.detach(), "const")
    moved = generator.synthesis(ws2, "const")
    torgb_only = generator.synthesis.b32.torgb
    with torch.no_grad():
        x = None
        image = None
        first = 0
        for res in generator.synthesis.resolutions:
            block = getattr(generator.synthesis, f"b{res}")
            x, image = block(x, image, ws.detach()[:, first : first + block.num_conv + 1], "const", True)
            first += block.num_conv
        delta = torgb_only(x, ws2[:, -1]) - torgb_only(x, ws.detach()[:, -1])
    assert torch.allclose(moved - base, delta, atol=1e-4)


def test_style_mixing_switches_to_another_w_at_a_cutoff_without_moving_w_avg():
    generator = tiny_generator(32)
    generator.mapping.eval()
    torch.manual_seed(3)
    ws = generator.mixed_ws(torch.randn(2, 16), probability=1.0)
    changes = (ws[:, 1:] - ws[:, :-1]).abs().sum((0, 2)) > 0
    assert changes.sum() == 1  # one cutoff
    generator.mapping.train()
    before = generator.mapping.w_avg.clone()
    generator.mapping(torch.randn(2, 16), update_average=False)
    assert torch.equal(generator.mapping.w_avg, before)
    unmixed = generator.mixed_ws(torch.randn(2, 16), probability=0.0)
    assert torch.equal(unmixed[:, 0], unmixed[:, -1])


def test_minibatch_std_appends_the_group_standard_deviation():
    x = torch.randn(8, 6, 4, 4)
    out = MinibatchStd(group=4)(x)
    assert out.shape == (8, 7, 4, 4)
    groups = x.reshape(4, 2, 6, 4, 4)  # sample i belongs to group i % 2
    expected = groups.std(0, unbiased=False).mean((1, 2, 3))
    assert torch.allclose(out[0, 6, 0, 0], expected[0], atol=1e-5)
    assert torch.allclose(out[1, 6, 0, 0], expected[1], atol=1e-5)
    assert MinibatchStd(group=4)(torch.randn(6, 6, 4, 4)).shape == (6, 7, 4, 4)  # group 2 divides 6


@pytest.mark.parametrize("clamp", [None, 0.5])
def test_generator_and_discriminator_shapes_gradients_and_clamping(clamp):
    generator = tiny_generator(16, conv_clamp=clamp).eval()
    image = generator(torch.randn(3, 16), noise_mode="const")
    assert image.shape == (3, 3, 16, 16) and image.isfinite().all()
    if clamp is not None:
        assert image.abs().max() <= 2 * clamp * len(generator.synthesis.resolutions)
    discriminator = Discriminator(16, 4, **SMALL, conv_clamp=clamp)
    real = torch.randn(4, 4, 16, 16, requires_grad=True)
    logits = discriminator(real)
    assert logits.shape == (4,)
    logits.sum().backward()
    assert real.grad.abs().sum() > 0 and discriminator.b16.fromrgb.weight.grad.abs().sum() > 0
