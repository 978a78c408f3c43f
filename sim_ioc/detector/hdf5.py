"""HDF5 files laid out as areaDetector's NDFileHDF5 plugin writes them.

The layout is ADCore's default one (no ``XMLFileName``)::

    /entry                                  NX_class=NXentry
    /entry/instrument                       NXinstrument
    /entry/instrument/detector              NXdetector
    /entry/instrument/detector/data         frames, (N, height, width)
    /entry/instrument/detector/NDAttributes NXcollection (ColorMode)
    /entry/instrument/NDAttributes          NXcollection: one (N,) dataset per
                                            NDAttribute, plus NDArrayUniqueId,
                                            NDArrayTimeStamp, NDArrayEpicsTSSec,
                                            NDArrayEpicsTSnSec
    /entry/data/data                        hard link to the frames (NXdata)

which is what ophyd-async's ``ADHDFDataLogic`` declares: the frames at
``/entry/data/data`` with chunks of ``NumFramesChunks`` frames, attributes at
``/entry/instrument/NDAttributes/<name>`` with chunks of 16384. In SWMR mode
every dataset is created before SWMR starts, and each batch of frames is
flushed as it is written, so readers (``h5py.File(..., swmr=True)``, Tiled)
see whole frames while the file grows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

__all__ = ["AttributeSpec", "Frame", "HDF5Writer"]

#: Chunk length of attribute datasets (ADCore's, and what ophyd-async declares).
ATTRIBUTE_CHUNK = 16384
#: Seconds from the POSIX epoch to the EPICS epoch (1990-01-01).
EPICS_EPOCH = 631152000


@dataclass(frozen=True)
class AttributeSpec:
    """An NDAttribute dataset: its name and numpy dtype string."""

    name: str
    dtype: str


@dataclass(frozen=True)
class Frame:
    """An NDArray as the plugin receives it."""

    image: npt.NDArray[Any]
    unique_id: int
    timestamp: float  # POSIX seconds of the exposure start
    attributes: Mapping[str, Any] = field(default_factory=dict)


#: The attributes every frame carries, as the HDF5 plugin stores them.
STANDARD_ATTRIBUTES = (
    AttributeSpec("NDArrayUniqueId", "<i4"),
    AttributeSpec("NDArrayTimeStamp", "<f8"),
    AttributeSpec("NDArrayEpicsTSSec", "<u4"),
    AttributeSpec("NDArrayEpicsTSnSec", "<u4"),
)


class HDF5Writer:
    """One open HDF5 file of the plugin's Stream mode."""

    def __init__(
        self,
        path: Path,
        frame_shape: tuple[int, ...],
        dtype: str,
        *,
        chunk_frames: int = 1,
        attributes: Sequence[AttributeSpec] = (),
        swmr: bool = True,
        compression: str | None = None,
    ) -> None:
        """Create ``path`` (replacing a file there) with every dataset empty.

        Raises OSError when the file cannot be created.
        """
        self.path = path
        self.frames = 0
        self.swmr = swmr
        self._file = h5py.File(path, "w", libver="latest")
        try:
            entry = self._group(self._file, "entry", "NXentry")
            instrument = self._group(entry, "instrument", "NXinstrument")
            detector = self._group(instrument, "detector", "NXdetector")
            self._data = detector.create_dataset(
                "data",
                shape=(0, *frame_shape),
                maxshape=(None, *frame_shape),
                dtype=dtype,
                chunks=(max(1, chunk_frames), *frame_shape),
                compression=compression,
            )
            self._data.attrs["NX_class"] = "SDS"
            self._data.attrs["signal"] = 1
            self._data.attrs["target"] = "/entry/instrument/detector/data"
            det_attrs = self._group(detector, "NDAttributes", "NXcollection")
            color = det_attrs.create_dataset("ColorMode", data=np.int32(0))
            color.attrs["NDAttrName"] = "ColorMode"
            nd_attrs = self._group(instrument, "NDAttributes", "NXcollection")
            self._attributes: dict[str, h5py.Dataset] = {}
            for spec in (*STANDARD_ATTRIBUTES, *attributes):
                if spec.name in self._attributes:
                    continue
                dset = nd_attrs.create_dataset(
                    spec.name,
                    shape=(0,),
                    maxshape=(None,),
                    dtype=spec.dtype,
                    chunks=(ATTRIBUTE_CHUNK,),
                )
                dset.attrs["NDAttrName"] = spec.name
                self._attributes[spec.name] = dset
            data = self._group(entry, "data", "NXdata")
            data["data"] = self._data  # a hard link, as the default layout has
            if swmr:
                self._file.swmr_mode = True
        except BaseException:
            self._file.close()
            raise

    @staticmethod
    def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
        group = parent.create_group(name)
        group.attrs["NX_class"] = nx_class
        return group

    def write(self, frames: Sequence[Frame]) -> None:
        """Append ``frames`` to every dataset; flushed at once in SWMR mode."""
        if not frames:
            return
        start, stop = self.frames, self.frames + len(frames)
        self._data.resize(stop, axis=0)
        self._data[start:stop] = np.stack([f.image for f in frames])
        columns: dict[str, list[Any]] = {name: [] for name in self._attributes}
        for f in frames:
            seconds = int(f.timestamp)
            standard = {
                "NDArrayUniqueId": f.unique_id,
                "NDArrayTimeStamp": f.timestamp - EPICS_EPOCH,
                "NDArrayEpicsTSSec": max(0, seconds - EPICS_EPOCH),
                "NDArrayEpicsTSnSec": int((f.timestamp - seconds) * 1e9),
            }
            for name, column in columns.items():
                default = b"" if self._attributes[name].dtype.kind == "S" else 0
                column.append(standard.get(name, f.attributes.get(name, default)))
        for name, dset in self._attributes.items():
            dset.resize(stop, axis=0)
            dset[start:stop] = np.asarray(columns[name]).astype(dset.dtype)
        self.frames = stop
        if self.swmr:
            self.flush()

    def flush(self) -> None:
        """Make everything written so far visible to readers."""
        self._data.flush()
        for dset in self._attributes.values():
            dset.flush()
        self._file.flush()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()
