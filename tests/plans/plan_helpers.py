"""Checks shared by the plan tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from panda_flyscan.storage import external_assets, read_stream
from panda_flyscan.storage.hdf5 import read_datasets

TICK = 8e-9


def panda_file(env: Any) -> Path:
    """The HDF5 file the PandA wrote in the last run."""
    info = env.beamline.path_provider.last["panda"]
    return Path(info.directory_path) / f"{info.filename}.h5"


def tiled_primary(env: Any, uid: str) -> dict[str, np.ndarray]:
    """The run's primary stream read back through Tiled."""
    ds = read_stream(env.client(), uid, "primary")
    return {str(name): np.asarray(ds[name]) for name in ds.data_vars}


def assert_tiled_matches_file(env: Any, uid: str, names: list[str]) -> dict:
    """Tiled serves exactly what h5py reads from the PandA's file, from that
    file; returns the Tiled arrays."""
    data = tiled_primary(env, uid)
    path = panda_file(env)
    arrays = read_datasets(path, *names)
    for name, array in zip(names, arrays, strict=True):
        np.testing.assert_array_equal(data[name], array)
        [asset] = external_assets(env.client(), uid, "primary", name)
        assert asset.path == path
    return data


def panda_idle(env: Any) -> tuple[bool, bool]:
    """PCAP (ARM, ACTIVE) as the IOC reports them."""
    pcap = env.beamline.panda.pcap
    return env.run(pcap.arm.get_value()), env.run(pcap.active.get_value())


def ticks(seconds: np.ndarray) -> np.ndarray:
    """Seconds as whole 8 ns ticks, checking they are whole."""
    t = np.rint(np.asarray(seconds) / TICK).astype(np.int64)
    np.testing.assert_allclose(seconds, t * TICK, rtol=0, atol=1e-12)
    return t
