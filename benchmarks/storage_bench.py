"""Storage benchmark: writer overhead per document, read-back throughput.

Run on demand (not a test)::

    .venv/bin/python benchmarks/storage_bench.py [--events 3000] [--datums 1000]

Starts the package's local Tiled service (SQLite catalog, DuckDB tables) in a
subprocess and measures, in one run:

1. Overhead per Event document: ``bp.count([det], N)`` with no delay, with
   no subscriber, then with each writer; overhead = (time - bare time) / N.
   Writers: bluesky-tiled-plugins' ``TiledWriter`` batched (default batch
   10000, nothing visible before the stop), the same with ``batch_size=1``
   (live, one request per document), and ``DurableTiledWriter`` (journal +
   background flush every 0.5 s, live). The time the RunEngine waits at the
   stop document is included.
2. Overhead per StreamDatum document: a run collecting N times from a
   StreamResource-writing device (one StreamDatum per collect), same writers.
3. Read-back of an external HDF5 dataset registered from a StreamResource:
   whole-array read through Tiled versus h5py on the same file.

Prints the figures and their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import h5py
import numpy as np
from bluesky import RunEngine
from bluesky_tiled_plugins import TiledWriter
from event_model import ComposeStreamResource
from ophyd.sim import hw

from panda_flyscan.storage import DurableTiledWriter, TiledService

API_KEY = "bench"


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
        self.index = min(self.index + self.rows_per_collect, self.shape[0])
        if self._bundle is None:
            self._bundle = ComposeStreamResource()(
                mimetype="application/x-hdf5",
                uri=self.path.as_uri(),
                data_key=self.name,
                parameters={
                    "dataset": self.dataset,
                    "chunk_shape": [1, *self.shape[1:]],
                },
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


def timed(RE: RunEngine, plan_factory: Callable[[], Any], repeat: int = 3) -> float:
    """Best of ``repeat`` wall times of running the plan."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        RE(plan_factory())
        times.append(time.perf_counter() - start)
    return min(times)


def with_writer(
    RE: RunEngine, make: Callable[[], Any], plan_factory: Callable[[], Any], repeat: int
) -> tuple[float, Any]:
    writer = make()
    token = RE.subscribe(writer)
    try:
        return timed(RE, plan_factory, repeat), writer
    finally:
        RE.unsubscribe(token)
        if isinstance(writer, DurableTiledWriter):
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per run")
    parser.add_argument("--datums", type=int, default=1000, help="StreamDatums per run")
    parser.add_argument(
        "--live-docs", type=int, default=200, help="docs for batch_size=1"
    )
    parser.add_argument(
        "--frames", type=int, default=200, help="frames of the read test"
    )
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="storage-bench-"))
    external = base / "external"
    external.mkdir()
    print(f"working directory: {base}")
    with TiledService(base / "tiled", api_key=API_KEY, readable=[external]) as service:
        client = service.client()
        RE = RunEngine({})
        det = hw().det

        def journal() -> Path:
            return base / f"journal-{time.monotonic_ns()}"

        writers: dict[str, Callable[[], Any]] = {
            "TiledWriter batched (default)": lambda: TiledWriter(client),
            "TiledWriter batch_size=1": lambda: TiledWriter(client, batch_size=1),
            "DurableTiledWriter (ours)": lambda: DurableTiledWriter(
                client, journal_dir=journal()
            ),
        }

        # ---- 1. Event documents ------------------------------------------
        def results_for(
            title: str, n_full: int, plan_for: Callable[[int], Callable[[], Any]]
        ) -> None:
            print(f"\n== {title} ==")
            rows: dict[str, float] = {}
            bare_full = timed(RE, plan_for(n_full))
            bare_live = timed(RE, plan_for(args.live_docs))
            print(f"  no subscriber: {bare_full / n_full * 1e6:8.1f} us per document")
            for label, make in writers.items():
                n, bare = (
                    (args.live_docs, bare_live)
                    if "batch_size=1" in label
                    else (n_full, bare_full)
                )
                repeat = 1 if "batch_size=1" in label else 3
                elapsed, writer = with_writer(RE, make, plan_for(n), repeat)
                rows[label] = (elapsed - bare) / n
                extra = ""
                if isinstance(writer, DurableTiledWriter):
                    in_thread = writer.stats.mean_call_seconds * 1e6
                    extra = f"  (in RunEngine thread: {in_thread:.0f} us mean per call)"
                print(f"  {label:32s} {rows[label] * 1e6:9.1f} us per document{extra}")
            batched = rows["TiledWriter batched (default)"]
            for label, value in rows.items():
                print(f"  ratio {label:26s} / batched: {value / batched:6.2f}")

        results_for(
            f"overhead per Event document (bp.count, {args.events} events)",
            args.events,
            lambda n: lambda: bp.count([det], n),
        )

        # ---- 2. StreamDatum documents ---------------------------------------
        frame_shape = (max(args.datums, args.live_docs), 4, 4)
        small = external / "datums.h5"
        with h5py.File(small, "w") as handle:
            handle["/data"] = np.arange(np.prod(frame_shape), dtype="<u2").reshape(
                frame_shape
            )
        device = StreamingDevice(small, "/data", frame_shape, "<u2")
        results_for(
            f"overhead per StreamDatum document ({args.datums} collects)",
            args.datums,
            lambda n: lambda: collect_plan(device, n),
        )

        # ---- 3. read-back throughput --------------------------------------------
        print(
            f"\n== read-back of an external HDF5 dataset "
            f"({args.frames} x 512 x 512 u2) =="
        )
        big_shape = (args.frames, 512, 512)
        big = external / "frames.h5"
        rng = np.random.default_rng(0)
        with h5py.File(big, "w") as handle:
            handle.create_dataset(
                "/entry/data/data",
                data=rng.integers(0, 4096, size=big_shape, dtype="<u2"),
                chunks=(1, 512, 512),
            )
        device = StreamingDevice(big, "/entry/data/data", big_shape, "<u2")
        device.rows_per_collect = 10
        writer = DurableTiledWriter(client, journal_dir=journal())
        token = RE.subscribe(writer)
        (uid,) = RE(collect_plan(device, args.frames // 10))  # type: ignore[misc]
        RE.unsubscribe(token)
        writer.close()
        nbytes = int(np.prod(big_shape)) * 2

        def read_h5py() -> np.ndarray:
            with h5py.File(big, "r") as handle:
                return np.asarray(handle["/entry/data/data"])

        def read_tiled() -> np.ndarray:
            return np.asarray(client[uid]["primary"]["frames"].read())

        reference = read_h5py()
        assert np.array_equal(read_tiled().reshape(big_shape), reference)
        t_h5 = statistics.median(_time(read_h5py) for _ in range(5))
        t_tiled = statistics.median(_time(read_tiled) for _ in range(5))
        mb = nbytes / 1e6
        print(
            f"  h5py on the file:  {mb / t_h5:8.0f} MB/s  "
            f"({t_h5 * 1e3:.0f} ms for {mb:.0f} MB)"
        )
        print(
            f"  through Tiled:     {mb / t_tiled:8.0f} MB/s  ({t_tiled * 1e3:.0f} ms)"
        )
        print(f"  ratio Tiled / h5py throughput: {t_h5 / t_tiled:.3f}")


def _time(func: Callable[[], Any]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
