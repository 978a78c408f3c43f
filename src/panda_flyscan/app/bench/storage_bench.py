"""Storage benchmark: writer overhead per document, read-back throughput.

The functions here are what ``panda-flyscan bench`` measures figure 4 with
(see :mod:`~.measure_storage`); run as a script it measures just that::

    .venv/bin/python -m panda_flyscan.app.bench.storage_bench [--quick] [--repeats 3]

1. Overhead per Event document: ``bp.count([det], N)`` (ophyd.sim's det, no
   delay) with no subscriber, then with each writer, one after the other in
   each repeat; overhead = (time - bare time) / N. Writers: bluesky-tiled-
   plugins' ``TiledWriter`` (default batching: one request per 10000 rows or
   at the stop) and the package's ``DurableTiledWriter`` (journal on disk +
   background flush every 0.5 s). The time the RunEngine waits at the stop
   document (until the run is in Tiled) is included.
2. Overhead per StreamDatum document: a run collecting N times from a device
   writing StreamResource/StreamDatum (one StreamDatum per collect, as a
   detector or the PandA emits), same writers.
3. Read-back of a PandA dataset (the suite captures 1e6 rows through the real
   IOC) and of 1,000 detector frames: read through Tiled (the bundled HDF5
   adapter; ``fetch_arrays`` on array clients looked up once) versus h5py on
   the same file (held open), alternately, whole and in slices (1,000 rows;
   one frame); slices also through a second server running Tiled's own HDF5
   adapter (what the bundled service did before); and the server's peak
   memory while reading one frame of a 1 GB file.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "StreamingDevice",
    "collect_plan",
    "peak_rss_growth",
    "read_h5py",
    "read_tiled",
    "register_file",
    "upstream_service",
    "write_datum_file",
    "writer_overhead",
]


class StreamingDevice:
    """A collectable device whose data is an HDF5 dataset already on disk.

    Each ``collect`` emits one StreamDatum for the next ``rows_per_collect``
    rows (and the StreamResource first), like a detector or PandA writer.
    """

    def __init__(self, path: Path, dataset: str, shape: tuple[int, ...], dtype: str):
        self.name = "frames"
        self.parent = None
        self.path, self.dataset = path, dataset
        self.shape, self.dtype = shape, dtype
        self.index = 0
        self.emitted = 0
        self.rows_per_collect = 1
        #: The StreamResource's chunk_shape (the structure's chunks in Tiled).
        self.chunk_shape = [1, *shape[1:]]
        self._bundle: Any = None

    def describe_collect(self) -> dict[str, Any]:
        return {
            self.name: {
                "source": self.path.as_uri(),
                "shape": [1, *self.shape[1:]],
                "dtype": "array",
                "dtype_numpy": np.dtype(self.dtype).str,
                "external": "STREAM:",
            }
        }

    def get_index(self) -> int:
        return self.index

    def collect_asset_docs(self, index: int | None = None) -> Iterator[tuple[str, Any]]:
        from event_model import ComposeStreamResource

        self.index = min(self.index + self.rows_per_collect, self.shape[0])
        if self._bundle is None:
            self._bundle = ComposeStreamResource()(
                mimetype="application/x-hdf5",
                uri=self.path.as_uri(),
                data_key=self.name,
                parameters={"dataset": self.dataset, "chunk_shape": self.chunk_shape},
            )
            yield "stream_resource", self._bundle.stream_resource_doc
        if self.index > self.emitted:
            yield (
                "stream_datum",
                self._bundle.compose_stream_datum(
                    {"start": self.emitted, "stop": self.index}
                ),
            )
            self.emitted = self.index


def collect_plan(device: StreamingDevice, collects: int):
    """A run with one StreamDatum per collect, ``collects`` times."""
    import bluesky.plan_stubs as bps

    device.index = device.emitted = 0
    device._bundle = None
    # bluesky types these stubs for Readable/Flyable; a Collectable is enough.
    dev: Any = device
    uid = yield from bps.open_run()
    yield from bps.declare_stream(dev, name="primary", collect=True)
    for _ in range(collects):
        yield from bps.collect(dev, name="primary")
    yield from bps.close_run()
    return uid


def write_datum_file(path: Path, rows: int) -> StreamingDevice:
    """A small HDF5 dataset (``rows`` x 4 x 4 u2) and a device streaming it."""
    shape = (rows, 4, 4)
    with h5py.File(path, "w") as handle:
        handle["/data"] = np.arange(np.prod(shape), dtype="<u2").reshape(shape)
    return StreamingDevice(path, "/data", shape, "<u2")


def _timed(RE: Any, plan: Any) -> float:
    start = time.perf_counter()
    RE(plan)
    return time.perf_counter() - start


def writer_overhead(
    RE: Any,
    plan_for: Callable[[], Any],
    documents: int,
    writers: dict[str, Callable[[], Any]],
    repeats: int,
) -> dict[str, list[float]]:
    """Seconds of overhead per document of each writer, one sample per repeat.

    Each repeat runs the plan with no subscriber, then with each writer
    (made before the timed run, closed after), one after the other, so the
    bare time a writer is compared with was measured moments before.
    ``plan_for()`` makes a plan emitting ``documents`` documents of the kind
    measured. Also returns the bare seconds per document as ``"bare"``.
    """
    out: dict[str, list[float]] = {"bare": [], **{name: [] for name in writers}}
    for _ in range(repeats):
        bare = _timed(RE, plan_for())
        out["bare"].append(bare / documents)
        for name, make in writers.items():
            writer = make()
            token = RE.subscribe(writer)
            try:
                elapsed = _timed(RE, plan_for())
            finally:
                RE.unsubscribe(token)
                close = getattr(writer, "close", None)
                if close is not None:
                    close()
            out[name].append((elapsed - bare) / documents)
    return out


def read_h5py(path: Path, datasets: Sequence[str]) -> dict[str, np.ndarray]:
    """Whole datasets of an HDF5 file, with h5py."""
    with h5py.File(path, "r") as handle:
        out = {}
        for name in datasets:
            dataset = handle[name]
            assert isinstance(dataset, h5py.Dataset)
            out[name] = np.asarray(dataset[()])
        return out


def read_tiled(
    client: Any, uid: str, variables: Sequence[str]
) -> dict[str, np.ndarray]:
    """Whole data keys of a run's ``primary`` stream, through Tiled."""
    from panda_flyscan.storage import read_stream

    dataset = read_stream(client, uid, variables=list(variables))
    return {name: np.asarray(dataset[name]) for name in variables}


def register_file(
    RE: Any,
    client: Any,
    path: Path,
    dataset: str,
    chunk_shape: Sequence[int],
    collects: int = 10,
) -> str:
    """A run registering an HDF5 dataset already on disk in ``client``'s Tiled
    (StreamResource + ``collects`` StreamDatum, by the TiledWriter); its uid.
    The data key is ``frames``."""
    from bluesky_tiled_plugins import TiledWriter

    with h5py.File(path, "r") as handle:
        node = handle[dataset]
        assert isinstance(node, h5py.Dataset)
        shape, dtype = tuple(node.shape), node.dtype.str
    device = StreamingDevice(path, dataset, shape, dtype)
    device.chunk_shape = list(chunk_shape)
    device.rows_per_collect = -(-shape[0] // collects)
    token = RE.subscribe(TiledWriter(client))
    try:
        (uid,) = RE(collect_plan(device, collects))
    finally:
        RE.unsubscribe(token)
    return uid


def upstream_service(base: Path, readable: Sequence[Path], log_path: Path) -> Any:
    """A (not started) local Tiled service as before the bundled adapter:
    the same configuration, Tiled's own HDF5 adapter."""
    import yaml

    from panda_flyscan.storage import TiledService, local_tiled_config

    config = local_tiled_config(base / "data", readable=readable, port=0)
    config["catalog"].pop("adapters_by_mimetype")
    (base / "data").mkdir(parents=True, exist_ok=True)
    for sub in ("data", "external"):
        (base / "data" / sub).mkdir(exist_ok=True)
    config_file = base / "tiled-upstream.yml"
    config_file.write_text(yaml.safe_dump(config))
    return TiledService(config_file=config_file, log_path=log_path)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth(pid: int, action: Callable[[], Any]) -> float:
    """MB by which process ``pid``'s peak resident memory rose above its
    resident memory while ``action`` ran (Linux: the peak is reset first)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to VmRSS
    before = _status_kb(pid, "VmRSS")
    action()
    return (_status_kb(pid, "VmHWM") - before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()

    import tempfile

    from panda_flyscan.app.bench.suite import Options, run_suite

    with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp:
        run_suite(
            Options(
                only=("writer", "readback"),
                quick=args.quick,
                repeats=args.repeats,
                output=Path(tmp) / "results",
            )
        )


if __name__ == "__main__":
    main()
