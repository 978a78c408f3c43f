"""The detector's frame stamp with the y position, and the image's y grating
(pure: no servers)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim_ioc.detector.frames import (
    STAMP_PIXELS,
    Y_DEPTH,
    Y_GRATING_PERIOD,
    Stamp,
    decode,
    render,
)

STAMP = Stamp(position=0.731, tick=987_654_321, index=7, exposure=625_000, y=-1.0625)


def test_the_stamp_round_trips_with_y_and_keeps_the_old_words_where_they_were() -> None:
    image = render(STAMP)
    assert decode(image) == STAMP
    np.testing.assert_array_equal(render(decode(image)), image)
    words = image[0, :STAMP_PIXELS].astype("<u2").tobytes()
    # Pixels 0-13 as before there was a y: x, tick, index, exposure...
    assert np.frombuffer(words[0:8], "<f8")[0] == STAMP.position
    assert np.frombuffer(words[8:16], "<u8")[0] == STAMP.tick
    assert np.frombuffer(words[16:20], "<u4")[0] == STAMP.index
    assert np.frombuffer(words[20:28], "<u8")[0] == STAMP.exposure
    # ...then y in pixels 14-17.
    assert STAMP_PIXELS == 18
    assert np.frombuffer(words[28:36], "<f8")[0] == STAMP.y


def test_a_stamp_without_y_is_at_y_0() -> None:
    stamp = Stamp(0.5, 10, 0)
    assert stamp.y == 0.0
    assert decode(render(stamp)).y == 0.0


def test_the_image_follows_y_with_its_own_period() -> None:
    image = render(STAMP).astype(int)
    period = render(dataclasses.replace(STAMP, y=STAMP.y + Y_GRATING_PERIOD))
    half = render(dataclasses.replace(STAMP, y=STAMP.y + Y_GRATING_PERIOD / 2))
    # Below the stamp row: one y period on looks the same, half of one not.
    assert np.abs(period[1:].astype(int) - image[1:]).max() <= 1
    assert np.abs(half[1:].astype(int) - image[1:]).max() > 200
    # Moving y does not shift the x grating: each row's brightest column
    # stays where it was.
    rows = slice(24, 40)
    np.testing.assert_array_equal(
        image[rows].argmax(axis=1), half[rows].astype(int).argmax(axis=1)
    )


def test_at_y_0_the_centre_row_is_as_without_a_y_grating() -> None:
    """Row height/2 looks at sample y = 0, where the y grating is clear."""
    from sim_ioc.detector.frames import BACKGROUND, GRATING_PERIOD, PEAK, PIXEL_SIZE

    stamp = Stamp(position=0.0, tick=0, index=0)
    row = render(stamp)[32].astype(float)
    cols = np.arange(64)
    beam = np.exp(-((cols - 32) ** 2) / (2 * 16**2))
    grating = 0.5 * (1 + np.cos((cols - 32) * PIXEL_SIZE * 2 * np.pi / GRATING_PERIOD))
    expected = np.rint(BACKGROUND + PEAK * beam * grating)
    np.testing.assert_array_equal(row[STAMP_PIXELS:], expected[STAMP_PIXELS:])
    # Half a y period away the centre row is dimmed by Y_DEPTH.
    dim = render(dataclasses.replace(stamp, y=Y_GRATING_PERIOD / 2))[32].astype(float)
    assert dim[32] - BACKGROUND == pytest.approx(
        (1 - Y_DEPTH) * (row[32] - BACKGROUND), abs=1
    )


def test_a_frame_too_narrow_for_the_stamp_is_refused() -> None:
    with pytest.raises(ValueError, match=f"at least {STAMP_PIXELS} columns"):
        render(STAMP, (8, STAMP_PIXELS - 1))
    assert render(STAMP, (8, STAMP_PIXELS)).shape == (8, STAMP_PIXELS)
