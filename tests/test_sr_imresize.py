"""MATLAB-compatible bicubic imresize and the SR metrics, against independently derived numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from i2i_srgan.imresize import cubic, downscale, imresize, modcrop
from i2i_srgan.metrics import psnr, rgb_to_y, sr_metrics, ssim

SET5 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sr" / "Set5"

# Hand derivation for imresize(x, 0.5) (MATLAB imresize.m, bicubic, antialiasing on):
# output pixel i (1-based) sits at input coordinate u = i / 0.5 + 0.5 * (1 - 1 / 0.5) = 2i - 0.5.
# The kernel is stretched to h(d) = 0.5 * k(0.5 d) with Keys' k (a = -0.5), so input pixels at
# distances 0.5, 1.5, 2.5, 3.5 get 0.5 * k(0.25), 0.5 * k(0.75), 0.5 * k(1.25), 0.5 * k(1.75):
#   k(0.25) = 1.5/64 - 2.5/16 + 1                  =  0.8671875
#   k(0.75) = 1.5*27/64 - 2.5*9/16 + 1             =  0.2265625
#   k(1.25) = -0.5*125/64 + 2.5*25/16 - 5 + 2      = -0.0703125
#   k(1.75) = -0.5*343/64 + 2.5*49/16 - 7 + 2      = -0.0234375
# (they sum to 1 over the 8 taps, so the normalisation changes nothing).
HALF_TAPS = np.array([-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875])
# For the ramp 1..8, output 1 (u = 1.5) reads input indices -2..5; MATLAB mirrors out-of-range indices
# symmetrically ([1:n, n:-1:1]): -2, -1, 0 -> 3, 2, 1. So it is HALF_TAPS . [3, 2, 1, 1, 2, 3, 4, 5]
# = 1.44921875; output 2 (u = 3.5) reads 0..7 -> [1, 1, 2, ..., 7] = 3.5 - 0.01171875 = 3.48828125;
# outputs 3 and 4 follow by the ramp's symmetry (9 - the mirrored ones).
RAMP8_HALF = [1.44921875, 3.48828125, 5.51171875, 7.55078125]
# Upscaling [1, 2, 3, 4] to 8 samples (no antialiasing): output 1 at u = 0.75 reads indices -1..2
# (mirrored to values 2, 1, 1, 2) with k(1.75), k(0.75), k(0.25), k(1.25):
# -0.0234375*2 + 0.2265625 + 0.8671875 - 0.0703125*2 = 0.90625.
RAMP4_DOUBLE_FIRST = 0.90625


def test_cubic_kernel_is_keys_a_minus_half() -> None:
    assert cubic(np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5])).tolist() == pytest.approx(
        [1.0, 0.8671875, 0.2265625, 0.0, -0.0703125, -0.0234375, 0.0, 0.0])


def test_downscale_ramp_matches_hand_derivation() -> None:
    ramp = np.tile(np.arange(1, 9, dtype=np.float64), (4, 1))
    out = imresize(ramp, scale=0.5)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out, np.tile(RAMP8_HALF, (2, 1)), atol=1e-12)


def test_downscale_impulse_is_outer_product_of_antialiased_taps() -> None:
    # An impulse far from the borders: every output pixel is one tap of h(dy) * h(dx).
    img = np.zeros((24, 24))
    img[11, 11] = 1.0  # 0-based 11 = 1-based 12, at distance 0.5 from output 6 (u = 11.5)
    out = imresize(img, scale=0.5)
    expected = np.zeros((12, 12))
    # outputs 3..10 (1-based) have u = 5.5 .. 19.5; input 12 is at distance u - 12 = -6.5 .. 7.5
    col = np.zeros(12)
    for i in range(1, 13):
        d = abs((2 * i - 0.5) - 12)
        col[i - 1] = 0.5 * cubic(np.array([0.5 * d]))[0]
    expected = np.outer(col, col)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    # Outputs 5..8 (1-based) sit at distances 2.5, 0.5, 1.5, 3.5 from the impulse: one tap each
    # (a factor-2 shrink samples every other tap); all other outputs are out of the kernel's reach.
    hand = np.zeros(12)
    hand[4:8] = [HALF_TAPS[1], HALF_TAPS[3], HALF_TAPS[2], HALF_TAPS[0]]
    np.testing.assert_allclose(col, hand, atol=1e-12)


def test_upscale_mirrors_the_border_like_matlab() -> None:
    out = imresize(np.array([[1.0, 2.0, 3.0, 4.0]]), size=(1, 8))
    assert out[0, 0] == pytest.approx(RAMP4_DOUBLE_FIRST, abs=1e-12)
    assert out[0, -1] == pytest.approx(5 - RAMP4_DOUBLE_FIRST, abs=1e-12)  # mirror image of the first


def test_constant_and_dtypes() -> None:
    img = np.full((13, 17, 3), 77, dtype=np.uint8)
    small = imresize(img, scale=1 / 3)
    assert small.dtype == np.uint8 and small.shape == (5, 6, 3) and (small == 77).all()
    big = imresize(img.astype(np.float32), scale=2)
    assert big.dtype == np.float64 and big.shape == (26, 34, 3)
    np.testing.assert_allclose(big, 77.0)


def test_downscale_modcrops() -> None:
    hr = np.zeros((35, 42, 3), dtype=np.uint8)
    assert modcrop(hr, 4).shape == (32, 40, 3)
    assert downscale(hr, 4).shape == (8, 10, 3)


def test_metrics_known_values() -> None:
    a = np.full((32, 32, 3), 100, dtype=np.uint8)
    b = a + 1
    assert psnr(a, b) == pytest.approx(10 * np.log10(255.0**2))  # MSE 1
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0)
    np.testing.assert_allclose(rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)), [[235.0, 16.0]])
    m = sr_metrics(a, b, crop_border=4)
    assert set(m) == {"psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb"}


@pytest.mark.skipif(not SET5.is_dir(), reason="needs ../shared/datasets/sr/Set5")
def test_set5_bicubic_matches_the_published_baseline() -> None:
    # The SR papers' bicubic rows for Set5 (e.g. VDSR, EDSR tables): x4 28.42 dB / 0.8104,
    # x2 33.66 dB / 0.9299 (PSNR/SSIM on Y, border = scale), computed with MATLAB's imresize.
    from i2i.imageio import list_images, read_image

    published = {4: (28.42, 0.8104), 2: (33.66, 0.9299)}
    for scale, (p_ref, s_ref) in published.items():
        values = []
        for path in list_images(SET5):
            hr = modcrop(read_image(path), scale)
            values.append(sr_metrics(imresize(downscale(hr, scale), scale=scale), hr, scale))
        assert np.mean([v["psnr_y"] for v in values]) == pytest.approx(p_ref, abs=0.03)
        assert np.mean([v["ssim_y"] for v in values]) == pytest.approx(s_ref, abs=0.0015)


def test_lr_crop_equals_the_region_of_the_full_image_lr() -> None:
    # Training crops compute their LR from a window with a margin of context: it must equal the
    # same region of the whole image's LR, including crops touching the image border.
    from i2i_srgan.data import lr_crop

    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    full = downscale(hr, 4)
    for top, left in [(0, 0), (3, 5), (16 - 6, 20 - 6), (7, 0)]:
        np.testing.assert_array_equal(lr_crop(hr, 4, top, left, 6), full[top : top + 6, left : left + 6])
