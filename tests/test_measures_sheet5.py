"""The sheet-5 measures of helpers.measures: hand-computed values and the properties each promises."""

import math

import pytest
import torch

from helpers import measures as M
from helpers import normalize


def pixels(x: torch.Tensor) -> torch.Tensor:
    return normalize(x)


def test_numbers_use_a_unicode_minus_and_relative_change():
    assert M.number(-0.5) == "−0.500"
    assert M.percent_change(0.112, 0.041) == "−63%"
    assert M.percent_change(-0.2, -0.1) == "+50%"
    assert M.percent_change(0.0, 1.0) == "n/a"
    assert M.before_after(0.112, 0.041) == "0.112 → 0.041 (−63%)"
    assert M.before_after(-0.002, 0.455, relative=False) == "−0.002 → 0.455"
    assert M.number(float("nan")) == "n/a"
    assert M.table(["a", "b"], [["x", -1.25]], digits=1) == "| a | b |\n|---|---|\n| x | −1.2 |"


def test_from_to_names_the_direction_the_printed_numbers_show():
    assert M.from_to(0.112, 0.41) == "rises from 0.112 to 0.410"
    assert M.from_to(98, 14, 0, "%") == "falls from 98% to 14%"
    assert M.from_to(-0.5, -0.7, 1, " px") == "falls from −0.5 px to −0.7 px"
    assert M.from_to(0.5, 0.5004) == "stays at 0.500"          # equal as printed: no direction
    assert M.from_to(0.5, 0.5006) == "stays within 5% (0.500 to 0.501)"   # 0.1%: no direction
    assert M.from_to(0.5, 0.5006, close=0) == "rises from 0.500 to 0.501"
    assert M.from_to(0.49, 0.48, 2, " px") == "stays within 5% (0.49 px to 0.48 px)"
    assert M.from_to(0.49, 0.46, 2, " px") == "falls from 0.49 px to 0.46 px"   # 6% of 0.49
    assert M.from_to(-1.0, 1.0, 1) == "rises from −1.0 to 1.0"
    assert M.from_to(float("nan"), 0.5) == "goes from n/a to 0.500"


def test_pixel_change_brightness_bounds_colour_contrast():
    black, white = pixels(torch.zeros(1, 3, 4, 4)), pixels(torch.ones(1, 3, 4, 4))
    grey = pixels(torch.full((1, 3, 4, 4), 0.5))
    assert M.pixel_change(black, white).item() == pytest.approx(1.0, abs=1e-5)
    assert M.pixel_change(grey, grey).item() == 0
    assert M.brightness(grey).item() == pytest.approx(0.5, abs=1e-5)
    assert M.at_bounds(black).item() == 1 and M.at_bounds(grey).item() == 0
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1
    assert M.colourfulness(pixels(red)).item() == pytest.approx(1.0, abs=1e-5)
    assert M.colourfulness(grey).item() == pytest.approx(0.0, abs=1e-5)
    half = torch.zeros(1, 3, 4, 4)
    half[..., :2] = 1
    assert M.contrast(pixels(half)).item() == pytest.approx(0.5, abs=1e-5)
    assert M.contrast(grey).item() == pytest.approx(0.0, abs=1e-5)


def test_correlation_length_grows_with_the_motif():
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(2, 3, 64, 64, generator=g)
    blocks = torch.rand(2, 1, 8, 8, generator=g).repeat_interleave(8, -1).repeat_interleave(8, -2).expand(-1, 3, -1, -1)
    short, long = M.correlation_length(pixels(noise)), M.correlation_length(pixels(blocks))
    assert (short < 1.0).all()
    assert (long > 2.0).all() and (long < 8.0).all()
    assert math.isnan(M.correlation_length(pixels(torch.full((1, 3, 16, 16), 0.3))).item())


def test_scaled_gains_are_scale_free_and_rank():
    g = torch.Generator().manual_seed(1)
    before = torch.randn(3, 5, 5, generator=g)
    after = before + torch.tensor([1.0, 2.0, 0.5])[:, None, None]
    gains = M.scaled_gains(before, after)
    scale = torch.tensor([10.0, 1.0, 1.0])[:, None, None]
    assert torch.allclose(M.scaled_gains(before * scale, after * scale), gains, rtol=1e-5)
    assert torch.allclose(gains, torch.tensor([1.0, 2.0, 0.5]) / before.flatten(1).std(dim=1), rtol=1e-5)
    assert M.rank_of(torch.tensor([0.1, 0.5, 0.3]), 2) == 2


def test_overlap_and_the_choice_rules():
    assert M.mean_overlap([{1, 2}, {2, 3}, {4, 5}]) == pytest.approx((0.5 + 0 + 0) / 3)
    with pytest.raises(ValueError):
        M.mean_overlap([{1}])
    act = {0.0: 1.0, 0.3: 0.8, 1.0: 0.6, 3.0: 0.2}
    assert M.largest_keeping(act, 0.5) == 1.0
    assert M.largest_keeping(act, 0.9) is None
    assert M.largest_keeping({0.0: -1.0, 1.0: 5.0}, 0.5) is None
    assert M.largest_within({0.01: 0.02, 0.02: 0.05, 0.04: 0.2}, 0.1) == 0.02
    assert M.largest_within({0.01: 0.5}, 0.1) is None
