"""read_datasets on a file whose writer died without closing it (flagged open
for SWMR writing: a plain open refuses it for good)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from panda_flyscan.storage.hdf5 import read_datasets

_DIE_WRITING = """
import os, sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "w", libver="latest")
d = f.create_dataset("x", data=np.arange(10.0), maxshape=(None,), chunks=(4,))
f.swmr_mode = True
d.resize((25,))
d[10:] = np.arange(10.0, 25.0)
f.flush()
os._exit(0)  # as a SIGKILLed IOC: no close
"""


def test_a_file_its_dead_writer_left_open_is_read_as_swmr(tmp_path: Path) -> None:
    path = tmp_path / "left-open.h5"
    subprocess.run([sys.executable, "-c", _DIE_WRITING, str(path)], check=True)
    with pytest.raises(OSError):
        h5py.File(path, "r")  # what a plain reader meets
    (x,) = read_datasets(path, "x", timeout=0.2)
    np.testing.assert_array_equal(x, np.arange(25.0))
    # Nothing was changed: a plain open still refuses it.
    with pytest.raises(OSError):
        h5py.File(path, "r")


def test_a_missing_file_is_still_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read_datasets(tmp_path / "nope.h5", "x", timeout=0.1)
