"""LPIPS-VGG from format-exact files the test writes (torchvision's VGG16 state dict layout, the lpips package's
v0.1 heads): the distance matches an independent evaluation of its definition, is zero for equal images and linear
in the heads; missing or foreign files are one-line errors; the latent fit reports it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facegen.errors import ConfigError
from facegen.losses.lpips import BLOCKS, LPIPS, SCALE, SHIFT, LpipsFiles


def write_files(folder, seed: int = 0, heads_scale: float = 1.0) -> LpipsFiles:
    """Random VGG16 weights under torchvision's keys (with a classifier tensor, as the real file has) and random
    positive heads under the lpips package's keys."""
    generator = torch.Generator().manual_seed(seed)
    backbone, index, channels = {}, 0, 3
    for block, widths in enumerate(BLOCKS):
        index += 1 if block else 0  # the max-pool before each block after the first
        for width in widths:
            std = (2 / (9 * channels)) ** 0.5
            backbone[f"features.{index}.weight"] = (
                torch.randn(width, channels, 3, 3, generator=generator) * std
            )
            backbone[f"features.{index}.bias"] = torch.randn(width, generator=generator) * 0.05
            index, channels = index + 2, width
    backbone["classifier.0.weight"] = torch.zeros(4, 7)
    heads = {
        f"lin{k}.model.1.weight": torch.rand(1, widths[-1], 1, 1, generator=generator) * heads_scale
        for k, widths in enumerate(BLOCKS)
    }
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(backbone, folder / "vgg16.pth")
    torch.save(heads, folder / "vgg.pth")
    return LpipsFiles(str(folder / "vgg16.pth"), str(folder / "vgg.pth"))


def by_definition(files: LpipsFiles, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS written out from its definition with F.conv2d over the state dicts."""
    backbone = torch.load(files.backbone, weights_only=True)
    heads = torch.load(files.heads, weights_only=True)
    shift, scale = torch.tensor(SHIFT).view(1, 3, 1, 1), torch.tensor(SCALE).view(1, 3, 1, 1)
    total = torch.zeros(a.shape[0])
    xs = [((image * 2 - 1) - shift) / scale for image in (a, b)]
    index = 0
    for block, widths in enumerate(BLOCKS):
        if block:
            xs = [F.max_pool2d(x, 2) for x in xs]
            index += 1
        for _ in widths:
            weight, bias = backbone[f"features.{index}.weight"], backbone[f"features.{index}.bias"]
            xs = [F.relu(F.conv2d(x, weight, bias, padding=1)) for x in xs]
            index += 2
        units = [x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for x in xs]
        weighted = (units[0] - units[1]).pow(2) * heads[f"lin{block}.model.1.weight"]
        total = total + weighted.sum(1).mean((1, 2))
    return total


def test_lpips_follows_its_definition_and_is_zero_for_equal_images(tmp_path):
    files = write_files(tmp_path / "w")
    metric = LPIPS.from_files(files)
    generator = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 3, 32, 32, generator=generator), torch.rand(3, 3, 32, 32, generator=generator)
    with torch.no_grad():
        distance = metric(a, b)
        assert torch.allclose(distance, by_definition(files, a, b), rtol=1e-5, atol=1e-7)
        assert (distance > 0).all() and torch.allclose(metric(b, a), distance, rtol=1e-6)
        assert metric(a, a).abs().max() < 1e-7
        doubled = LPIPS.from_files(write_files(tmp_path / "d", heads_scale=2.0))
        assert torch.allclose(doubled(a, b), 2 * distance, rtol=1e-5)
    assert not any(p.requires_grad for p in metric.parameters())


def test_missing_or_foreign_lpips_files_are_one_line_errors(tmp_path):
    files = write_files(tmp_path / "w")
    with pytest.raises(ConfigError, match=r"^lpips.heads: .*missing.pth does not exist; give backbone"):
        LPIPS.from_files(LpipsFiles(files.backbone, str(tmp_path / "missing.pth")))
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "small.pth")
    with pytest.raises(ConfigError, match=r"lpips.backbone .*small.pth: not the expected weights"):
        LPIPS.from_files(LpipsFiles(str(tmp_path / "small.pth"), files.heads))
    (tmp_path / "text.pth").write_text("not a state dict")
    with pytest.raises(ConfigError, match="text.pth is not a readable state dict"):
        LPIPS.from_files(LpipsFiles(files.backbone, str(tmp_path / "text.pth")))
