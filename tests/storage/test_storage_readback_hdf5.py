"""Reading HDF5 external data through a real Tiled server (SQLite and PostgreSQL).

The files are registered by the TiledWriter from StreamResource/StreamDatum
documents, as the PandA's and detectors' are; the server reads them with the
bundled adapter (:mod:`panda_flyscan.storage.hdf5_adapter`). Whole and sliced
reads equal h5py's, through Tiled's own client and through ``read_array``; and
during a run whose file grows under an SWMR writer, every read is a prefix of
the final data and their lengths never decrease.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import h5py
import numpy as np
import pytest
from bluesky_tiled_plugins import TiledWriter

from panda_flyscan.storage import fetch_array, read_array, read_arrays


class _Streaming:
    """A collectable device over an HDF5 dataset: each collect emits a
    StreamDatum for the rows written so far (a StreamResource first)."""

    def __init__(
        self, path: Path, dataset: str, frame: tuple[int, ...], dtype: str, chunk: int
    ) -> None:
        self.name, self.parent = "frames", None
        self.path, self.dataset, self.frame, self.dtype = path, dataset, frame, dtype
        self.chunk_shape = [chunk, *frame]
        self.rows = 0  # what the file holds (set by the test)
        self.emitted = 0
        self._bundle: Any = None

    def describe_collect(self) -> dict[str, Any]:
        return {
            self.name: {
                "source": self.path.as_uri(),
                "shape": [1, *self.frame],
                "dtype": "array",
                "dtype_numpy": np.dtype(self.dtype).str,
                "external": "STREAM:",
            }
        }

    def get_index(self) -> int:
        return self.rows

    def collect_asset_docs(self, index: int | None = None) -> Any:
        from event_model import ComposeStreamResource

        if self._bundle is None:
            self._bundle = ComposeStreamResource()(
                mimetype="application/x-hdf5",
                uri=self.path.as_uri(),
                data_key=self.name,
                parameters={"dataset": self.dataset, "chunk_shape": self.chunk_shape},
            )
            yield "stream_resource", self._bundle.stream_resource_doc
        if self.rows > self.emitted:
            yield (
                "stream_datum",
                self._bundle.compose_stream_datum(
                    {"start": self.emitted, "stop": self.rows}
                ),
            )
            self.emitted = self.rows


def _register(RE: Any, client: Any, device: _Streaming, collects: int = 1) -> str:
    """A run registering the device's file (``collects`` StreamDatum)."""

    def plan() -> Any:
        dev: Any = device
        uid = yield from bps.open_run()
        yield from bps.declare_stream(dev, name="primary", collect=True)
        for _ in range(collects):
            yield from bps.collect(dev, name="primary")
        yield from bps.close_run()
        return uid

    token = RE.subscribe(TiledWriter(client))
    try:
        (uid,) = RE(plan())
    finally:
        RE.unsubscribe(token)
    return uid


@pytest.fixture
def panda_run(backend, RE) -> tuple[Any, str, np.ndarray]:
    """A PandA-like dataset (200,000 float64 rows, 1024-row chunks) in a run."""
    data = np.cumsum(np.random.default_rng(5).random(200_000))
    path = backend.external_dir / f"panda-{uuid.uuid4().hex}.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("COUNTER1.OUT.Value", data=data, chunks=(1024,))
    device = _Streaming(path, "/COUNTER1.OUT.Value", (), "<f8", 1024)
    device.rows = data.size
    client = backend.client()
    return client, _register(RE, client, device), data


@pytest.fixture
def frames_run(backend, RE) -> tuple[Any, str, np.ndarray]:
    """A detector-like stack (60 frames of 48 x 64 uint16, a frame a chunk)."""
    data = np.random.default_rng(6).integers(0, 4096, (60, 48, 64), dtype="<u2")
    path = backend.external_dir / f"det-{uuid.uuid4().hex}.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("entry/data/data", data=data, chunks=(1, 48, 64))
    device = _Streaming(path, "/entry/data/data", (48, 64), "<u2", 1)
    device.rows = data.shape[0]
    client = backend.client()
    return client, _register(RE, client, device), data


@pytest.fixture(params=[True, False], ids=["files-read-here", "http"])
def direct(request) -> bool:
    """Read the files here (storage.direct) or over HTTP."""
    return request.param


@pytest.mark.parametrize(
    "index", [None, slice(0, 1000), slice(150_000, 151_000), slice(199_500, None)]
)
def test_panda_reads_equal_h5py(panda_run, index, direct) -> None:
    client, uid, data = panda_run
    expected = data if index is None else data[index]
    node = client[uid]["primary"]["frames"]
    np.testing.assert_array_equal(
        read_array(client, uid, "primary", "frames", index, direct=direct), expected
    )
    # Small blocks: many concurrent requests assembled in order.
    np.testing.assert_array_equal(
        fetch_array(node, index, block_bytes=64 * 1024, workers=4), expected
    )
    tiled_own = node.read() if index is None else node[index]
    np.testing.assert_array_equal(np.asarray(tiled_own), expected)


@pytest.mark.parametrize("index", [None, 7, slice(10, 20), (slice(5, 6), 0, 3)])
def test_frames_read_equal_h5py(frames_run, index, direct) -> None:
    client, uid, data = frames_run
    node = client[uid]["primary"]["frames"]
    # The structure carries ophyd-style unit axis: (N, 1, H, W).
    assert tuple(node.shape) == (60, 1, 48, 64)
    stacked = data[:, None]
    expected = stacked if index is None else stacked[index]
    np.testing.assert_array_equal(
        read_array(client, uid, "primary", "frames", index, direct=direct), expected
    )
    np.testing.assert_array_equal(
        fetch_array(node, index, block_bytes=3 * 48 * 64 * 2), expected
    )


def test_read_arrays_reads_several_keys(panda_run) -> None:
    client, uid, data = panda_run
    got = read_arrays(client, uid, "primary", ["frames"], slice(0, 5000))
    np.testing.assert_array_equal(got["frames"], data[:5000])


def test_reads_during_a_run_are_growing_prefixes(backend, RE, direct) -> None:
    """A writer appends rows (SWMR) and emits a StreamDatum after each flush;
    between collects the test reads through Tiled. Every read equals a prefix
    of the final data, lengths never decrease and reach the total: over HTTP,
    and reading the files here, which must not return the rows the file
    already holds beyond what Tiled registered."""
    final = np.cumsum(np.random.default_rng(7).random(30 * 3000))
    path = backend.external_dir / f"growing-{uuid.uuid4().hex}.h5"
    writer = h5py.File(path, "w", libver="latest")
    ds = writer.create_dataset(
        "x", shape=(0,), maxshape=(None,), chunks=(1024,), dtype="<f8"
    )
    writer.swmr_mode = True
    device = _Streaming(path, "/x", (), "<f8", 1024)
    client = backend.client()
    lengths: list[int] = []
    run_uid: list[str] = []

    def read_now() -> None:
        if not run_uid or device.emitted == 0:
            return
        got = read_array(client, run_uid[0], "primary", "frames", direct=direct)
        assert got.size <= final.size
        np.testing.assert_array_equal(got, final[: got.size])
        tail = read_array(
            client, run_uid[0], "primary", "frames", slice(-100, None), direct=direct
        )
        np.testing.assert_array_equal(tail, final[got.size - 100 : got.size])
        lengths.append(got.size)

    def plan() -> Any:
        dev: Any = device
        uid = yield from bps.open_run()
        run_uid.append(uid)
        yield from bps.declare_stream(dev, name="primary", collect=True)

        def write(rows: int) -> None:
            ds.resize((rows,))
            ds[rows - 3000 : rows] = final[rows - 3000 : rows]
            ds.flush()

        write(3000)
        for step in range(30):
            rows = (step + 1) * 3000
            device.rows = rows
            yield from bps.collect(dev, name="primary")
            if rows < final.size:
                write(rows + 3000)  # the file runs ahead of what Tiled lists
            read_now()  # the TiledWriter handled the StreamDatum synchronously
            assert lengths[-1] == rows
        yield from bps.close_run()
        return uid

    # batch_size=1: each StreamDatum reaches Tiled before collect returns.
    token = RE.subscribe(TiledWriter(client, batch_size=1))
    try:
        RE(plan())
    finally:
        RE.unsubscribe(token)
        writer.close()
    read_now()
    assert lengths == sorted(lengths)
    assert lengths[-1] == final.size
    assert len(set(lengths)) > 10  # it did see the data grow
