"""The bundled service's HDF5 adapter, in this process (no server).

Reads equal h5py's for whole arrays and any selection, the file-handle cache
is bounded, a one-frame read touches one frame's bytes, and a file growing
under an SWMR writer reads as consistent, growing prefixes.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
from tiled.adapters.utils import DataNotReadyError
from tiled.ndslice import NDBlock, NDSlice
from tiled.structures.array import ArrayStructure, BuiltinDtype
from tiled.structures.core import StructureFamily

from panda_flyscan.storage.config import ADAPTERS_BY_MIMETYPE, local_tiled_config
from panda_flyscan.storage.hdf5_adapter import (
    CachedHDF5Adapter,
    CachedHDF5ArrayAdapter,
    HandleCache,
)


def _structure(
    shape: tuple[int, ...], dtype: Any, chunk_rows: int = 1024
) -> ArrayStructure:
    rows = shape[0]
    full, rest = divmod(rows, chunk_rows)
    chunks = (
        tuple([chunk_rows] * full + ([rest] if rest else [])),
        *((n,) for n in shape[1:]),
    )
    return ArrayStructure(
        data_type=BuiltinDtype.from_numpy_dtype(np.dtype(dtype)),
        shape=shape,
        chunks=chunks,
    )


def _adapter(
    path: Path,
    name: str,
    shape: tuple[int, ...],
    dtype: Any,
    cache: HandleCache,
    chunk_rows: int = 1024,
) -> CachedHDF5ArrayAdapter:
    return CachedHDF5ArrayAdapter(
        [path], name, _structure(shape, dtype, chunk_rows), cache=cache
    )


@pytest.fixture
def panda_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A PandA-like file: 1-D float64 in 1024-row chunks."""
    data = np.cumsum(np.random.default_rng(1).random(10_000))
    path = tmp_path / "panda.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("COUNTER1.OUT.Value", data=data, chunks=(1024,))
    return path, data


@pytest.fixture
def frames_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A detector-like file: (N, H, W) uint16, one frame a chunk."""
    data = np.random.default_rng(2).integers(0, 4096, (40, 12, 16), dtype="<u2")
    path = tmp_path / "det.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("entry/data/data", data=data, chunks=(1, 12, 16))
    return path, data


SELECTIONS_1D: list[Any] = [
    ...,
    slice(None),
    slice(0, 1000),
    slice(1000, 2000),
    slice(1023, 1025),
    slice(9000, 20_000),
    slice(5, 5),
    slice(None, None, 7),
    slice(None, None, -3),
    slice(-50, None),
    0,
    9999,
    -1,
]


@pytest.mark.parametrize("selection", SELECTIONS_1D, ids=repr)
def test_panda_reads_equal_h5py(
    panda_file: tuple[Path, np.ndarray], selection: Any
) -> None:
    path, data = panda_file
    adapter = _adapter(
        path, "COUNTER1.OUT.Value", data.shape, data.dtype, HandleCache()
    )
    got = adapter.read(NDSlice(selection))
    np.testing.assert_array_equal(got, data[selection])
    assert got.dtype == data.dtype


SELECTIONS_3D: list[Any] = [
    ...,
    0,
    (5,),
    (slice(3, 9),),
    (slice(None), 2),
    (slice(2, 30, 4), slice(1, 11), slice(None, None, -1)),
    (-1, 3, 4),
    (slice(10, 10),),
]


@pytest.mark.parametrize("selection", SELECTIONS_3D, ids=repr)
def test_frames_read_equal_h5py(
    frames_file: tuple[Path, np.ndarray], selection: Any
) -> None:
    path, data = frames_file
    adapter = _adapter(path, "entry/data/data", data.shape, data.dtype, HandleCache())
    np.testing.assert_array_equal(adapter.read(NDSlice(selection)), data[selection])


@pytest.mark.parametrize(
    "selection", [..., 3, (slice(2, 5), 0), (1, 0, 2, 3)], ids=repr
)
def test_frames_with_a_unit_axis_in_the_structure(
    frames_file: tuple[Path, np.ndarray], selection: Any
) -> None:
    """ophyd-async describes one frame per event as (1, H, W): the structure
    is (N, 1, H, W) over an (N, H, W) dataset."""
    path, data = frames_file
    shape = (data.shape[0], 1, *data.shape[1:])
    adapter = _adapter(path, "entry/data/data", shape, data.dtype, HandleCache())
    expected = data.reshape(shape)[selection]
    np.testing.assert_array_equal(adapter.read(NDSlice(selection)), expected)


def test_blocks_follow_the_structure_chunks(
    panda_file: tuple[Path, np.ndarray],
) -> None:
    path, data = panda_file
    adapter = _adapter(
        path, "COUNTER1.OUT.Value", data.shape, data.dtype, HandleCache()
    )
    np.testing.assert_array_equal(adapter.read_block(NDBlock(2)), data[2048:3072])
    np.testing.assert_array_equal(adapter.read_block(NDBlock(9)), data[9216:])
    np.testing.assert_array_equal(
        adapter.read_block(NDBlock(1), NDSlice(slice(10, 20))), data[1034:1044]
    )


def test_rows_beyond_the_structure_are_not_served(
    panda_file: tuple[Path, np.ndarray],
) -> None:
    path, data = panda_file
    adapter = _adapter(path, "COUNTER1.OUT.Value", (5000,), data.dtype, HandleCache())
    np.testing.assert_array_equal(adapter.read(), data[:5000])
    with pytest.raises(IndexError):
        adapter.read(NDSlice(6000))


def test_more_rows_advertised_than_written_is_retryable(
    panda_file: tuple[Path, np.ndarray],
) -> None:
    path, data = panda_file
    adapter = _adapter(path, "COUNTER1.OUT.Value", (20_000,), data.dtype, HandleCache())
    with pytest.raises(DataNotReadyError):
        adapter.read()


def test_one_frame_reads_one_frame(frames_file: tuple[Path, np.ndarray]) -> None:
    """No whole-file reads: a one-frame read fetches one frame's bytes, the
    file is opened once for any number of reads."""
    path, data = frames_file
    cache = HandleCache()
    adapter = _adapter(path, "entry/data/data", data.shape, data.dtype, cache)
    for index in range(10):
        adapter.read(NDSlice(index))
    assert cache.stats.opens == 1
    assert cache.stats.reads == 10
    assert cache.stats.bytes_read == 10 * data[0].nbytes


def test_several_files_concatenate(tmp_path: Path) -> None:
    parts = [np.arange(n, dtype="<f8") + 100 * i for i, n in enumerate((700, 1300))]
    paths = []
    for i, part in enumerate(parts):
        paths.append(tmp_path / f"part{i}.h5")
        with h5py.File(paths[-1], "w") as f:
            f["x"] = part
    whole = np.concatenate(parts)
    adapter = CachedHDF5ArrayAdapter(
        paths, "x", _structure(whole.shape, whole.dtype), cache=HandleCache()
    )
    for selection in [..., slice(650, 750), slice(None, None, 3), 699, 700, -1]:
        np.testing.assert_array_equal(
            adapter.read(NDSlice(selection)), whole[selection]
        )


def test_handle_cache_is_bounded(tmp_path: Path) -> None:
    cache = HandleCache(max_open=3)
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"f{i}.h5")
        with h5py.File(paths[-1], "w") as f:
            f["x"] = np.full(4, i)
    for _ in range(2):
        for i, path in enumerate(paths):
            with cache.dataset(path, "x") as ds:
                assert ds[0] == i
            assert len(cache) <= 3
    assert cache.stats.evictions == cache.stats.opens - 3
    cache.close_all()
    assert len(cache) == 0


def test_idle_files_are_closed(tmp_path: Path) -> None:
    cache = HandleCache(idle_seconds=0.0)
    for i in range(2):
        path = tmp_path / f"f{i}.h5"
        with h5py.File(path, "w") as f:
            f["x"] = np.zeros(2)
        with cache.dataset(path, "x"):
            pass
    assert len(cache) == 1  # the first was idle (0 s) when the second was opened


def test_a_replaced_file_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    cache = HandleCache()
    for value in (1, 2):
        replacement = tmp_path / "new.h5"
        with h5py.File(replacement, "w") as f:
            f["x"] = np.full(3, value)
        replacement.replace(path)  # a new inode, as a rewritten file gets
        with cache.dataset(path, "x", rows=3) as ds:
            assert ds[0] == value
    assert cache.stats.opens == 2


def test_reads_during_an_swmr_run_are_growing_prefixes(tmp_path: Path) -> None:
    """A writer appends rows in SWMR mode while the catalog's count grows; each
    read (through one long-lived cached handle) returns exactly the advertised
    rows, equal to a prefix of the final data."""
    rng = np.random.default_rng(3)
    final = np.cumsum(rng.random(20 * 700))
    path = tmp_path / "growing.h5"
    cache = HandleCache()
    writer = h5py.File(path, "w", libver="latest")
    ds = writer.create_dataset(
        "x", shape=(0,), maxshape=(None,), chunks=(1024,), dtype="<f8"
    )
    writer.swmr_mode = True
    seen: list[int] = []
    try:
        for step in range(20):
            rows = (step + 1) * 700
            ds.resize((rows,))
            ds[rows - 700 : rows] = final[rows - 700 : rows]
            ds.flush()
            # The catalog advertises rows only once they are flushed.
            adapter = _adapter(path, "x", (rows,), final.dtype, cache)
            got = adapter.read()
            np.testing.assert_array_equal(got, final[:rows])
            tail = adapter.read(NDSlice(slice(rows - 10, rows)))
            np.testing.assert_array_equal(tail, final[rows - 10 : rows])
            seen.append(len(got))
    finally:
        writer.close()
    assert seen == sorted(seen) and seen[-1] == final.size
    assert cache.stats.opens == 1  # one handle followed the whole run
    assert cache.stats.refreshes >= 19


def _data_source(path: Path, structure: ArrayStructure, **parameters: Any) -> Any:
    asset = SimpleNamespace(data_uri=path.as_uri(), parameter="data_uris", num=0)
    return SimpleNamespace(
        structure_family=StructureFamily.array,
        structure=structure,
        assets=[asset],
        parameters=parameters,
        mimetype="application/x-hdf5",
    )


def test_from_catalog_serves_plain_datasets_itself(
    panda_file: tuple[Path, np.ndarray],
) -> None:
    path, data = panda_file
    node = SimpleNamespace(metadata_={"from": "catalog"}, specs=[])
    source = _data_source(path, _structure(data.shape, data.dtype))
    adapter = CachedHDF5Adapter.from_catalog(
        source, node, dataset="/COUNTER1.OUT.Value", swmr=True, locking=None
    )
    assert isinstance(adapter, CachedHDF5ArrayAdapter)
    assert adapter.metadata()["from"] == "catalog"
    np.testing.assert_array_equal(adapter.read(), data)


def test_from_catalog_leaves_source_slices_to_tiled(
    frames_file: tuple[Path, np.ndarray],
) -> None:
    path, data = frames_file
    node = SimpleNamespace(metadata_={}, specs=[])
    source = _data_source(
        path, _structure((20, 12, 16), data.dtype), slice="0:20", squeeze=False
    )
    # Tiled's catalog passes the data source's parameters as keywords.
    adapter = CachedHDF5Adapter.from_catalog(
        source, node, dataset="entry/data/data", **source.parameters
    )
    assert not isinstance(adapter, CachedHDF5ArrayAdapter)
    np.testing.assert_array_equal(np.asarray(adapter.read()), data[:20])


def test_the_bundled_configs_register_the_adapter(tmp_path: Path) -> None:
    from tiled.config import Config

    config = local_tiled_config(tmp_path)
    assert config["catalog"]["adapters_by_mimetype"] == ADAPTERS_BY_MIMETYPE
    Config.model_validate(config)
    module, _, name = ADAPTERS_BY_MIMETYPE["application/x-hdf5"].partition(":")
    assert getattr(__import__(module, fromlist=[name]), name) is CachedHDF5Adapter
