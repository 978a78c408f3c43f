"""``panda-flyscan bench``: the benchmark suite (:mod:`panda_flyscan.app.bench`).

The suite (:mod:`panda_flyscan.app.bench.suite`) needs the ``[bench]`` extra;
it is imported only when the command runs, so ``--help`` stays light.
"""

from __future__ import annotations

from pathlib import Path

import click

FIGURES_HELP = """
\b
Figures (each repeated; the table shows median, min, max and runs):
\b
  1. efficiency     wall time of the whole time_scan plan (staging to the
                    run being in Tiled) / (N x period), N = 1e3, 1e4, 1e5
                    at 1 kHz; then a line of 100 points as the step scan
                    bp.scan([det], x, ...) and as spec_scan flying the same
                    points with det, on the same scale; flyscan / step-scan
                    time, pairwise per repeat
  2. latency        the run's stop document -> last frame readable
                    through Tiled, for each flyscan of 1
  3. capture        highest PandA capture rate (frames/s, MB/s) the
                    simulator + real IOC + HDF5 chain sustains without
                    overrun, with 4 and with 16 captured fields
  4. writer         TiledWriter and DurableTiledWriter overhead per Event
                    and per StreamDatum document, against no writer
     readback       a 1e6-row PandA dataset captured through the IOC and
                    1,000 detector frames, read through Tiled (over HTTP,
                    and the files read here) vs h5py, whole and in slices
                    (MB/s, ratios); Tiled's memory serving one frame
     liveview       the live view's lag behind a 1 kHz time_scan: from
                    the IOC's capture and from the StreamDatum to the
                    plot (median, 95%, last row)
  5. startup        simulated beamline start-up (simulator + IOC until
                    its PVs answer), Tiled start-up
     connect        device connect: first in the process, then again
     first-trigger  time_scan call -> first trigger (sequencer running)
  6. map            a 20 x 500 snake at 1 kHz with det by spec_scan: wall /
                    ideal (frames + the motors' turnaround from VELO and
                    ACCL), added time per line, fixed costs; bp.grid_scan
                    of a 4 x 50 grid against spec_scan, and their ratio
  7. soak           200 flyscans of four kinds in turn (--quick: 20):
                    memory, threads and open files of the IOC, the
                    simulator, this process and Tiled, growth from scan
                    20 to the last (%); scan time, last tenth / first
  8. bus            bp.count events through the NATS bus and the writer
                    service against the in-process writer: documents/s
                    (ratio), the RunEngine's cost per document, stop
                    document -> run complete in Tiled
  9. stream         time_scan 1e6 frames at 100 kHz and a streamed-table
                    10 x 10,000 spec_scan map at 1 kHz: frames x frame /
                    wall; one pause/resume's cost and request -> paused;
                    table generation's peak memory, 1e6 / 1e4 frames
\b
--quick: N = 1e3 only, fewer rates and repeats, a 1e5-row read-back, a
4 x 50 map (grid_scan 2 x 20), 20 soak scans: about 3 minutes on 2 cores.
The full run takes 20-30 minutes (the soak about 10).
"""


@click.command(epilog=FIGURES_HELP)
@click.option(
    "--quick", is_flag=True, help="A reduced set: small sizes, fewer repeats."
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    help="Repeats of every figure (scans of 1e5 points get a third) "
    "[default: per figure, printed in the table's runs column].",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-results"),
    show_default=True,
    help="Where results.json, table.md and scan-efficiency.png go.",
)
@click.option(
    "--only",
    multiple=True,
    metavar="NAME",
    help="Run only these measurements (repeat the option, or separate by "
    "commas): startup, connect, efficiency, latency, first-trigger, map, "
    "readback, liveview, capture, writer, soak, bus, stream.",
)
@click.option(
    "--keep-data",
    is_flag=True,
    help="Keep the HDF5 files, Tiled catalog and logs (a temporary directory "
    "otherwise removed at the end).",
)
def bench(
    quick: bool,
    repeats: int | None,
    output: Path,
    only: tuple[str, ...],
    keep_data: bool,
) -> None:
    """Measure the whole stack on the simulated beamline; print one table.

    Starts a simulated beamline (simulated PandA, real PandABlocks-ioc, motor,
    detector) and a local Tiled service, runs every measurement against them,
    stops them, prints the figures (median, min, max over repeated runs, and
    ratios measured side by side in the same run) and writes them as JSON
    with a plot of scan efficiency against N. See docs/benchmarks.md.
    """
    try:
        from panda_flyscan.app.bench.suite import MEASUREMENTS, Options, run_suite
    except ImportError as err:
        raise click.ClickException(
            f"the benchmark suite is not importable ({err}): install the [bench] "
            "extra (scripts/setup.sh does)"
        ) from err

    names = tuple(n.strip() for item in only for n in item.split(",") if n.strip())
    unknown = sorted(set(names) - set(MEASUREMENTS))
    if unknown:
        raise click.BadParameter(
            f"unknown {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}",
            param_hint="--only",
        )
    figures = run_suite(
        Options(
            quick=quick,
            repeats=repeats,
            only=names,
            output=output,
            keep_data=keep_data,
        )
    )
    if any(f.error is not None for f in figures):
        raise SystemExit(1)
