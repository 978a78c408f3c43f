"""Reading HDF5 files the PandA IOC and detectors wrote, straight from disk."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from ..polling import poll_until

__all__ = ["read_datasets"]

log = logging.getLogger(__name__)


def read_datasets(path: Path, *names: str, timeout: float = 10.0) -> list[np.ndarray]:
    """Read whole 1-D datasets from an HDF5 file the PandA IOC wrote and closed.

    The IOC closes the file on its own thread just after capture stops (no PV
    says when). Until then HDF5's lock refuses a plain open (an SWMR open
    would succeed, and a plain open right after it could still race the
    close), so retry a plain open until ``timeout``: on return the file is
    closed.

    A file its writer never closed (the IOC killed mid-scan) stays flagged
    open for writing, and a plain open refuses it for good. After ``timeout``
    it is read as an SWMR reader (which ignores the flag and sees every row
    the writer flushed), with a warning; the file itself is not modified.
    """

    def read(swmr: bool = False) -> tuple[list[np.ndarray]]:
        with h5py.File(path, "r", swmr=swmr) as f:
            out = []
            for name in names:
                dataset = f[name]
                if not isinstance(dataset, h5py.Dataset):
                    raise KeyError(f"{path} has no dataset {name!r}")
                out.append(np.asarray(dataset[()]))
        return (out,)  # a true value even with no names

    try:
        (arrays,) = poll_until(read, timeout=timeout, retry_on=(OSError,))
    except OSError as exc:
        if not path.exists():
            raise
        try:
            (arrays,) = read(swmr=True)
        except OSError:
            raise exc from None  # the plain open's reason is the useful one
        log.warning(
            "%s is still flagged open by its writer after %g s (%s); read as an "
            "SWMR reader: the rows its writer flushed",
            path,
            timeout,
            exc,
        )
    return arrays
