"""Reading HDF5 files the PandA IOC and detectors wrote, straight from disk."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..polling import poll_until

__all__ = ["read_datasets"]


def read_datasets(path: Path, *names: str, timeout: float = 10.0) -> list[np.ndarray]:
    """Read whole 1-D datasets from an HDF5 file the PandA IOC wrote and closed.

    The IOC closes the file on its own thread just after capture stops (no PV
    says when). Until then HDF5's lock refuses a plain open (an SWMR open
    would succeed, and a plain open right after it could still race the
    close), so retry a plain open until ``timeout``: on return the file is
    closed.
    """

    def read() -> tuple[list[np.ndarray]]:
        with h5py.File(path, "r") as f:
            out = []
            for name in names:
                dataset = f[name]
                if not isinstance(dataset, h5py.Dataset):
                    raise KeyError(f"{path} has no dataset {name!r}")
                out.append(np.asarray(dataset[()]))
        return (out,)  # a true value even with no names

    # On time-out the last OSError is re-raised, as the file still refuses.
    (arrays,) = poll_until(read, timeout=timeout, retry_on=(OSError,))
    return arrays
