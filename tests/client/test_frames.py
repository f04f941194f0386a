"""The frame normalisation rule (atomscale_bluesky.frames)."""

from __future__ import annotations

import numpy as np
import pytest

from atomscale_bluesky.frames import FrameError, as_frame_stack, to_uint8


def test_uint8_passes_through_unchanged() -> None:
    a = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert to_uint8(a) is a


def test_uint16_declared_12_bit_shifts_by_4() -> None:
    a = np.array([[0, 16, 4095]], dtype=np.uint16)
    assert to_uint8(a, bit_depth=12).tolist() == [[0, 1, 255]]


def test_uint16_without_depth_uses_full_range() -> None:
    a = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    assert to_uint8(a).tolist() == [[0, 0, 1, 255]]


def test_value_beyond_declared_depth_is_an_error() -> None:
    with pytest.raises(FrameError, match="12-bit hold values up to 4096"):
        to_uint8(np.array([4096], dtype=np.uint16), bit_depth=12)


def test_small_bit_depth_stretches_to_full_byte() -> None:
    assert to_uint8(np.array([0, 1], dtype=np.uint8), bit_depth=1).tolist() == [0, 255]
    assert to_uint8(np.array([0, 7, 15], dtype=np.uint8), bit_depth=4).tolist() == [0, 119, 255]


def test_signed_integers_need_depth_beyond_255_and_no_negatives() -> None:
    assert to_uint8(np.array([0, 200], dtype=np.int64)).tolist() == [0, 200]
    with pytest.raises(FrameError, match="declare the camera's bit_depth"):
        to_uint8(np.array([0, 300], dtype=np.int64))
    assert to_uint8(np.array([0, 4095], dtype=np.int32), bit_depth=12).tolist() == [0, 255]
    with pytest.raises(FrameError, match="negative"):
        to_uint8(np.array([-1, 3], dtype=np.int16))


def test_floats_by_range() -> None:
    assert to_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    assert to_uint8(np.array([0.0, 2.4, 2.5, 255.0])).tolist() == [0, 2, 3, 255]
    with pytest.raises(FrameError, match=r"\[0, 1\]"):
        to_uint8(np.array([0.0, 256.0]))
    with pytest.raises(FrameError, match="non-finite"):
        to_uint8(np.array([0.0, np.nan]))
    with pytest.raises(FrameError, match="non-finite"):
        to_uint8(np.array([np.inf]))


def test_bool_and_unsupported_dtypes() -> None:
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]
    with pytest.raises(FrameError, match="complex"):
        to_uint8(np.array([1 + 2j]))
    with pytest.raises(FrameError):
        to_uint8(np.array(["a"]))


def test_shapes_become_n_h_w() -> None:
    assert as_frame_stack(np.zeros((4, 5), np.uint8)).shape == (1, 4, 5)
    assert as_frame_stack(np.zeros((2, 4, 5), np.uint8)).shape == (2, 4, 5)
    with pytest.raises(FrameError, match=r"\(H,W\) or \(N,H,W\)"):
        as_frame_stack(np.zeros(5, np.uint8))
    with pytest.raises(FrameError):
        as_frame_stack(np.zeros((2, 2, 2, 2, 2), np.uint8))
    with pytest.raises(FrameError, match="empty"):
        as_frame_stack(np.zeros((0, 4, 4), np.uint8))


def test_rgb_becomes_bt601_luma() -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, 0] = (0, 0, 255)
    rgb[1, 1] = (255, 255, 255)
    out = as_frame_stack(rgb)
    assert out.shape == (1, 2, 2)
    assert out[0].tolist() == [[76, 150], [29, 255]]
    rgba = np.concatenate([rgb, np.full((2, 2, 1), 7, np.uint8)], axis=-1)
    assert (as_frame_stack(rgba[np.newaxis]) == out).all()


def test_n_h_3_ambiguity_resolved_by_shape() -> None:
    stack = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3)
    assert as_frame_stack(stack).shape == (1, 2, 4)  # colour by default
    explicit = as_frame_stack(stack, shape=(4, 3))
    assert explicit.shape == (2, 4, 3)
    assert (explicit == stack).all()


def test_flat_waveform_reshaped_with_shape() -> None:
    flat = np.arange(2 * 3 * 4, dtype=np.uint8)
    out = as_frame_stack(flat, shape=(3, 4))
    assert out.shape == (2, 3, 4) and out.flags.c_contiguous
    with pytest.raises(FrameError, match="whole number"):
        as_frame_stack(np.arange(7, dtype=np.uint8), shape=(3, 4))


def test_uint16_stack_with_bit_depth() -> None:
    a = np.full((3, 2, 2), 4095, np.uint16)
    out = as_frame_stack(a, bit_depth=12)
    assert out.dtype == np.uint8 and (out == 255).all()
