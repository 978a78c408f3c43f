"""Checks shared by the live-view and demo tests."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np


def assert_non_trivial_png(path: Path, size: tuple[int, int] = (1200, 800)) -> None:
    """``path`` is a PNG of ``size`` pixels (width, height) with more than a
    few colours (not a blank or one-colour image)."""
    image = matplotlib.image.imread(path)
    assert (image.shape[1], image.shape[0]) == size
    pixels = image.reshape(-1, image.shape[-1])
    assert len(np.unique(pixels, axis=0)) > 10, f"{path} is (nearly) one colour"
