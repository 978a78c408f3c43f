"""Figure 4, storage: the writers' overhead per document, and reading a
PandA dataset back through Tiled against h5py on the same file."""

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


def readback(s: Suite) -> None:
    """A PandA dataset of ``readback_rows`` rows captured through the real IOC,
    read whole through Tiled and with h5py, alternately."""
    import h5py
    import numpy as np

    from panda_flyscan.app.bench.storage_bench import read_h5py, read_tiled
    from panda_flyscan.storage import external_assets

    b = s.budget
    rows = b.readback_rows
    s.warm_up()
    result = s.flyscan(rows, b.readback_period)
    s.log(
        f"captured {format_count(rows)} rows at {1 / b.readback_period:g} Hz "
        f"through the IOC for the read-back: {result.wall:.1f} s"
    )
    [asset] = external_assets(s.ctx.client, result.uid, "primary", "trigger_time")
    with h5py.File(asset.path, "r") as handle:
        names = [str(n) for n in handle if isinstance(handle[str(n)], h5py.Dataset)]
    reference = read_h5py(asset.path, names)
    nbytes = sum(a.nbytes for a in reference.values())
    via_tiled = read_tiled(s.ctx.client, result.uid, names)
    for name in names:
        assert np.array_equal(via_tiled[name], reference[name]), name
    label = (
        f"{format_count(rows)} PandA rows ({len(names)} fields, {nbytes / 1e6:.0f} MB)"
    )
    tiled_fig = s.figure(
        "storage.read.tiled",
        "storage",
        f"read through Tiled, {label}",
        "MB/s",
        details={"rows": rows, "fields": names, "bytes": nbytes},
    )
    h5_fig = s.figure(
        "storage.read.h5py", "storage", "read with h5py, the same file", "MB/s"
    )
    ratio = s.figure(
        "storage.read.ratio", "storage", "Tiled / h5py throughput", ratio=True
    )
    for _ in range(b.readback_repeats):
        t0 = time.perf_counter()
        read_tiled(s.ctx.client, result.uid, names)
        t1 = time.perf_counter()
        read_h5py(asset.path, names)
        t2 = time.perf_counter()
        tiled_fig.add(nbytes / 1e6 / (t1 - t0))
        h5_fig.add(nbytes / 1e6 / (t2 - t1))
    ratio.samples = pairwise_ratio(tiled_fig.samples, h5_fig.samples)
    s.log(
        f"read-back of {format_count(rows)} rows: Tiled {tiled_fig.median:.0f} MB/s, "
        f"h5py {h5_fig.median:.0f} MB/s"
    )


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
