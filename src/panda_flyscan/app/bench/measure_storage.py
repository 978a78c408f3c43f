"""Figure 4, storage: the writers' overhead per document, and reading PandA
datasets and detector frames back through Tiled against h5py on the same
files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from panda_flyscan.app.bench.stats import Figure, format_count, pairwise_ratio

if TYPE_CHECKING:
    from panda_flyscan.app.bench.suite import Suite

__all__ = ["readback", "writer"]


# -- read-back ---------------------------------------------------------------------


#: Detector frames of the read-back (the simulated detector's frame size).
FRAMES = 1000
FRAME_SHAPE = (240, 320)
#: The large file one frame is read from (memory figure): 1,000 frames of
#: 512 x 1024 uint16, 1.05 GB (``--quick``: 250 frames).
BIG_FRAME_SHAPE = (512, 1024)
#: Slices timed per repeat (each a request, at a random offset).
SLICES = 20


def readback(s: Suite) -> None:
    """PandA rows captured through the real IOC and detector frames, read
    through Tiled and with h5py on the same files, alternately: whole, and in
    slices (1,000 rows; one frame); slices also through Tiled's own adapter;
    the server's memory reading one frame of a 1 GB file."""
    import h5py

    from panda_flyscan.app.bench.storage_bench import register_file
    from panda_flyscan.storage import external_assets

    b = s.budget
    rows = b.readback_rows
    s.warm_up()
    result = s.flyscan(rows, b.readback_period)
    s.log(
        f"captured {format_count(rows)} rows at {1 / b.readback_period:g} Hz "
        f"through the IOC for the read-back: {result.wall:.1f} s"
    )
    client = s.ctx.client
    [asset] = external_assets(client, result.uid, "primary", "trigger_time")
    with h5py.File(asset.path, "r") as handle:
        names = [str(n) for n in handle if isinstance(handle[str(n)], h5py.Dataset)]
    stream = client[result.uid]["primary"]
    panda_nodes = {name: stream[name] for name in names}

    external = s.ctx.work_dir / "external"
    external.mkdir(exist_ok=True)
    frames_path = external / "readback-frames.h5"
    _write_frames(frames_path, FRAMES, FRAME_SHAPE)
    frames_uid = register_file(
        s.ctx.RE, client, frames_path, "/data", (1, *FRAME_SHAPE)
    )
    frames_node = client[frames_uid]["primary"]["frames"]

    label = f"{format_count(rows)} PandA rows ({len(names)} fields"
    _compare(s, "storage.read", f"{label}, whole", asset.path, panda_nodes, None, rows)
    _compare(
        s,
        "storage.read.slice",
        f"{label}, 1,000-row slices",
        asset.path,
        panda_nodes,
        1000,
        rows,
    )
    frames = {"/data": frames_node}
    flabel = f"{FRAMES:,} detector frames ({FRAME_SHAPE[0]} x {FRAME_SHAPE[1]} u2"
    _compare(s, "storage.frames", f"{flabel}, whole", frames_path, frames, None, FRAMES)
    _compare(
        s,
        "storage.frames.one",
        f"{flabel}, one frame",
        frames_path,
        frames,
        1,
        FRAMES,
    )
    _upstream_slices(s, asset.path, names[0], rows, frames_path)
    _one_frame_memory(s, external, rows >= 1_000_000)


def _write_frames(path: Path, frames: int, shape: tuple[int, int]) -> None:
    """``frames`` frames of uint16 noise, one a chunk, as area detectors write."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    with h5py.File(path, "w", libver="latest") as handle:
        dataset = handle.create_dataset(
            "/data", shape=(frames, *shape), dtype="<u2", chunks=(1, *shape)
        )
        for start in range(0, frames, 50):
            stop = min(start + 50, frames)
            dataset[start:stop] = rng.integers(0, 4096, (stop - start, *shape))


def _compare(
    s: Suite,
    key: str,
    label: str,
    path: Path,
    nodes: dict[str, Any],
    rows: int | None,
    total: int,
) -> None:
    """Tiled / h5py throughput of whole reads (``rows`` None) or of ``SLICES``
    reads of ``rows`` rows at random offsets, alternately, in one run."""
    import h5py
    import numpy as np

    from panda_flyscan.storage import fetch_arrays

    rng = np.random.default_rng(1)
    with h5py.File(path, "r") as handle:
        datasets = {name: handle[name] for name in nodes}

        def h5py_read(index: Any) -> dict[str, Any]:
            return {
                n: np.asarray(d[()] if index is None else d[index])  # type: ignore[index]
                for n, d in datasets.items()
            }

        def tiled_read(index: Any, direct: bool = False) -> dict[str, Any]:
            return fetch_arrays(nodes, index, direct=direct)

        whole = None if rows is None else slice(0, rows)
        reference = h5py_read(whole)
        for direct in (False, True):
            first = tiled_read(whole, direct)
            for name, value in reference.items():
                assert np.array_equal(first[name].reshape(value.shape), value), name
        tiled_fig = s.figure(
            f"{key}.tiled", "storage", f"read through Tiled, {label}), HTTP", "MB/s"
        )
        direct_fig = s.figure(
            f"{key}.direct",
            "storage",
            "the same through Tiled, files read here (storage.direct)",
            "MB/s",
        )
        h5_fig = s.figure(
            f"{key}.h5py", "storage", "read with h5py, the same file", "MB/s"
        )
        ratio = s.figure(
            f"{key}.ratio", "storage", "Tiled HTTP / h5py throughput", ratio=True
        )
        direct_ratio = s.figure(
            f"{key}.direct.ratio",
            "storage",
            "Tiled, files read here / h5py throughput",
            ratio=True,
        )
        count = 1 if rows is None else SLICES
        for _ in range(s.budget.readback_repeats):
            if rows is None:
                indices: list[Any] = [None]
            else:
                starts = rng.integers(0, total - rows, count)
                indices = [slice(int(a), int(a) + rows) for a in starts]
            t0 = time.perf_counter()
            nbytes = sum(sum(a.nbytes for a in tiled_read(i).values()) for i in indices)
            t1 = time.perf_counter()
            for i in indices:
                tiled_read(i, True)
            t2 = time.perf_counter()
            for i in indices:
                h5py_read(i)
            t3 = time.perf_counter()
            tiled_fig.add(nbytes / 1e6 / (t1 - t0))
            direct_fig.add(nbytes / 1e6 / (t2 - t1))
            h5_fig.add(nbytes / 1e6 / (t3 - t2))
            tiled_fig.details["ms_per_read"] = (t1 - t0) / count * 1e3
            direct_fig.details["ms_per_read"] = (t2 - t1) / count * 1e3
        ratio.samples = pairwise_ratio(tiled_fig.samples, h5_fig.samples)
        direct_ratio.samples = pairwise_ratio(direct_fig.samples, h5_fig.samples)
    s.log(
        f"read-back, {label}): Tiled HTTP {tiled_fig.median:.1f} MB/s, files read "
        f"here {direct_fig.median:.0f} MB/s, h5py {h5_fig.median:.0f} MB/s, ratios "
        f"{ratio.median:.3g} / {direct_ratio.median:.3g}"
    )


def _upstream_slices(
    s: Suite, panda_path: Path, field: str, rows: int, frames_path: Path
) -> None:
    """1,000-row slices and one frame through a second server that runs Tiled's
    own HDF5 adapter (the files registered there too), against the bundled one."""
    import numpy as np

    from panda_flyscan.app.bench.storage_bench import register_file, upstream_service
    from panda_flyscan.storage import fetch_array

    base = s.ctx.work_dir / "tiled-upstream"
    service = upstream_service(
        base, [panda_path.parent, frames_path.parent], s.ctx.log_dir / "tiled-up.log"
    )
    with service:
        up = service.client()
        panda_uid = register_file(s.ctx.RE, up, panda_path, f"/{field}", (1024,))
        frames_uid = register_file(s.ctx.RE, up, frames_path, "/data", (1, 240, 320))
        cases = {
            "panda": (up[panda_uid]["primary"]["frames"], 1000, rows),
            "frame": (up[frames_uid]["primary"]["frames"], 1, FRAMES),
        }
        ours = {
            "panda": s.figures["storage.read.slice.tiled"],
            "frame": s.figures["storage.frames.one.tiled"],
        }
        rng = np.random.default_rng(2)
        for case, (node, size, total) in cases.items():
            fig = s.figure(
                f"storage.upstream.{case}",
                "storage",
                f"the same {'1,000-row slices' if case == 'panda' else 'one frame'}"
                " through Tiled's own HDF5 adapter",
                "MB/s",
            )
            for _ in range(s.budget.readback_repeats):
                starts = rng.integers(0, total - size, SLICES)
                t0 = time.perf_counter()
                nbytes = sum(
                    fetch_array(node, slice(int(a), int(a) + size), direct=False).nbytes
                    for a in starts
                )
                fig.add(nbytes / 1e6 / (time.perf_counter() - t0))
            ratio = s.figure(
                f"storage.upstream.{case}.ratio",
                "storage",
                "bundled adapter / Tiled's own, slice throughput",
                ratio=True,
            )
            # Not side by side (another server): medians, one sample.
            mine, theirs = ours[case].median, fig.median
            if mine is not None and theirs:
                ratio.samples = [mine / theirs]
            here = s.figures[ours[case].key.replace(".tiled", ".direct")].median
            direct_ratio = s.figure(
                f"storage.upstream.{case}.direct.ratio",
                "storage",
                "files read here / Tiled's own adapter over HTTP (before)",
                ratio=True,
            )
            if here is not None and theirs:
                direct_ratio.samples = [here / theirs]


def _one_frame_memory(s: Suite, external: Path, full: bool) -> None:
    """Peak memory growth of the Tiled server while one frame of a 1 GB file is
    read through it (``--quick``: 250 MB): the adapter reads only that frame."""
    from panda_flyscan.app.bench.storage_bench import peak_rss_growth, register_file
    from panda_flyscan.storage import fetch_array

    frames = 1000 if full else 250
    path = external / "readback-big.h5"
    _write_frames(path, frames, BIG_FRAME_SHAPE)
    size = path.stat().st_size
    uid = register_file(s.ctx.RE, s.ctx.client, path, "/data", (1, *BIG_FRAME_SHAPE))
    node = s.ctx.client[uid]["primary"]["frames"]
    fig = s.figure(
        "storage.frame.memory",
        "storage",
        f"Tiled server peak memory growth, one frame of a {size / 1e9:.2g} GB file",
        "MB",
        details={
            "file_bytes": size,
            "frame_bytes": 2 * BIG_FRAME_SHAPE[0] * BIG_FRAME_SHAPE[1],
        },
    )
    pid = s.ctx.tiled.pid
    for index in range(s.budget.readback_repeats):
        fig.add(peak_rss_growth(pid, lambda i=index: fetch_array(node, i * 7 % frames)))
    s.log(f"one frame of a {size / 1e9:.2g} GB file: server peak +{fig.median:.1f} MB")


# -- writer overhead ---------------------------------------------------------------

#: What a kind of document is measured with: its name, the documents per
#: run, a plan of N of them, and how (for the figure's note).
Kind = tuple[str, int, Callable[[int], Any], str]


def _writers(s: Suite) -> dict[str, Callable[[], Any]]:
    """The writers compared, each made afresh per run into the shared Tiled."""
    from bluesky_tiled_plugins import TiledWriter

    from panda_flyscan.storage import DurableTiledWriter

    client = s.ctx.client
    journals = s.ctx.work_dir / "journals"

    def journal() -> Path:
        return journals / f"j-{time.monotonic_ns()}"

    return {
        "TiledWriter": lambda: TiledWriter(client),
        "DurableTiledWriter": lambda: DurableTiledWriter(client, journal_dir=journal()),
    }


def _kinds(s: Suite) -> dict[str, Kind]:
    """Events from ``bp.count`` of ophyd.sim's det; StreamDatum documents
    from collects of a device streaming an HDF5 file already written."""
    import bluesky.plans as bp
    from ophyd.sim import hw

    from panda_flyscan.app.bench.storage_bench import collect_plan, write_datum_file

    b = s.budget
    det = hw().det
    external = s.ctx.work_dir / "external"
    external.mkdir(exist_ok=True)
    device = write_datum_file(external / "datums.h5", b.datums)
    return {
        "event": (
            "Event",
            b.events,
            lambda n: bp.count([det], n),
            "bp.count([ophyd.sim det], N), no delay",
        ),
        "datum": (
            "StreamDatum",
            b.datums,
            lambda n: collect_plan(device, n),
            "a run of N collects, one StreamDatum (1 row of 4x4 u2) each",
        ),
    }


def writer(s: Suite) -> None:
    """TiledWriter and DurableTiledWriter overhead per Event and per StreamDatum."""
    from panda_flyscan.app.bench.storage_bench import writer_overhead

    writers = _writers(s)
    RE = s.ctx.RE
    kinds = _kinds(s)
    # A small untimed run of each first: the writers' and Tiled's first-use costs.
    for _, _, plan_for, _ in kinds.values():
        writer_overhead(RE, lambda p=plan_for: p(20), 20, writers, 1)
    for kind, (doc, n, plan_for, how) in kinds.items():
        result = writer_overhead(
            RE, lambda p=plan_for, n=n: p(n), n, writers, s.budget.writer_repeats
        )
        figs = {
            name: _overhead_figure(s, kind, name, doc, n, how, result)
            for name in writers
        }
        ratio = s.figure(
            f"storage.{kind}.ratio",
            "storage",
            f"DurableTiledWriter / TiledWriter, per {doc}",
            ratio=True,
        )
        ratio.samples = pairwise_ratio(
            figs["DurableTiledWriter"].samples, figs["TiledWriter"].samples
        )
        s.log(
            f"writer overhead per {doc}: "
            + ", ".join(f"{k} {f.median:.0f} us" for k, f in figs.items())
        )


def _overhead_figure(
    s: Suite,
    kind: str,
    name: str,
    doc: str,
    n: int,
    how: str,
    result: dict[str, list[float]],
) -> Figure:
    """The figure of writer ``name``'s overhead per ``doc``, in us."""
    fig = s.figure(
        f"storage.{kind}.{name.lower()}",
        "storage",
        f"{name} overhead per {doc} ({format_count(n)}/run)",
        "us",
        note=f"{how}; (time with the writer - time without) / N",
    )
    fig.samples = [x * 1e6 for x in result[name]]
    fig.details["bare_us_per_doc"] = [x * 1e6 for x in result["bare"]]
    return fig
