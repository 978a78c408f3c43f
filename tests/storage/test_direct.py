"""Which external arrays are read straight from their files (storage.direct).

Fake array clients stand in for Tiled's: this is the decision logic only; the
reads themselves are checked against real servers in
test_storage_readback_hdf5.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from tiled.structures.array import ArrayStructure
from tiled.structures.core import StructureFamily
from tiled.structures.data_source import Asset, DataSource

from panda_flyscan.storage import fetch_array
from panda_flyscan.storage.direct import file_source, read_file_source


@dataclass
class _Node:
    """The parts of a Tiled array client that file_source and fetch_array use."""

    data: np.ndarray
    sources: list[DataSource]
    uri: str = field(
        default_factory=lambda: f"http://127.0.0.1:1/api/v1/metadata/{uuid.uuid4()}"
    )
    structure_family: str = "array"
    requests: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def structure(self) -> ArrayStructure:
        return ArrayStructure.from_array(self.data)

    def data_sources(self) -> list[DataSource]:
        self.requests.append("data_sources")
        return self.sources


def _source(path: Path, **parameters: Any) -> DataSource:
    return DataSource(
        structure=None,
        structure_family=StructureFamily.array,
        mimetype=parameters.pop("mimetype", "application/x-hdf5"),
        parameters={"dataset": "/x", "swmr": True, **parameters},
        assets=[
            Asset(data_uri=path.as_uri(), is_directory=False, parameter="data_uris")
        ],
    )


@pytest.fixture
def h5(tmp_path: Path) -> tuple[Path, np.ndarray]:
    data = np.arange(5000.0)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("x", data=data, chunks=(1024,), maxshape=(None,))
    return path, data


def test_a_plain_readable_hdf5_dataset_is_read_here(h5) -> None:
    path, data = h5
    source = file_source(_Node(data, [_source(path)]))
    assert source is not None
    assert source.paths == (path,) and source.dataset == "/x"
    np.testing.assert_array_equal(
        read_file_source(source, (slice(10, 20),)), data[10:20]
    )


def test_only_the_rows_tiled_lists_are_read(h5) -> None:
    """The file holds 5000 rows; Tiled lists 3000: a whole read returns 3000."""
    path, data = h5
    node = _Node(data[:3000], [_source(path)])
    np.testing.assert_array_equal(fetch_array(node, direct=True), data[:3000])


@pytest.mark.parametrize(
    "change",
    [
        {"mimetype": "image/tiff"},
        {"slice": "0:10"},
        {"squeeze": True},
        {"missing": True},
    ],
    ids=["not-hdf5", "sliced", "squeezed", "file-not-here"],
)
def test_anything_else_is_read_over_http(h5, tmp_path: Path, change) -> None:
    path, data = h5
    if change.pop("missing", False):
        path = tmp_path / "elsewhere.h5"
    node = _Node(data, [_source(path, **change)])
    assert file_source(node) is None
    with pytest.raises(ValueError, match="direct=False"):
        fetch_array(node, direct=True)


def test_data_sources_are_asked_once_per_array(h5) -> None:
    """A growing array (the live view's polls) costs no lookup per read."""
    path, data = h5
    node = _Node(data[:1000], [_source(path)], uri="http://127.0.0.1:1/once")
    for rows in (1000, 2000, 3000):
        node.data = data[:rows]
        np.testing.assert_array_equal(fetch_array(node), data[:rows])
    assert node.requests == ["data_sources"]
