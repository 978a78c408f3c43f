"""Checks of the connected devices before a run opens (reads only, or path PVs).

The plan's blocks exist on this PandA, the capture and wiring settings fit
it, and every writer (the PandA's IOC, each areaDetector HDF5 plugin) can
write where its path provider points. Each problem is a
:class:`~panda_flyscan.plans.PlanArgumentError` with nothing armed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ophyd_async.core import Settings, StandardDetector
from ophyd_async.fastcs.panda import HDFPanda

from .._compat.ophyd_async import detector_data_logics
from ..devices import Capture, CaptureError
from ..devices.capture import capture_settings, parse_field
from .errors import PlanArgumentError

__all__ = [
    "FREE_SPACE_FLOOR",
    "check_blocks",
    "check_data_directories",
    "check_free_space",
    "check_panda_settings",
    "prime_dataset_names",
    "prime_datasets",
]


#: Bytes that must stay free in a data directory beyond a scan's data: the
#: health watch stops a scan when free space falls below this, before a
#: writer fails mid-row.
FREE_SPACE_FLOOR = 1 << 20
#: Bytes per PandA row and captured dataset (the IOC writes float64/int64).
PANDA_BYTES_PER_VALUE = 8
#: Room for HDF5 metadata and chunk rounding: the estimate times this.
ESTIMATE_MARGIN = 1.1


async def check_panda_settings(
    panda: HDFPanda, captures: Sequence[Capture], wiring_values: Mapping[str, Any]
) -> Settings[HDFPanda]:
    """The capture Settings plus the plan's wiring (``"pcap.trig": "SEQ1.OUTA"``
    style paths), checked against the PandA; reads only."""
    try:
        settings = await capture_settings(panda, captures)
    except CaptureError as err:
        raise PlanArgumentError(str(err)) from err
    for path, value in wiring_values.items():
        signal: Any = panda
        for part in path.split("."):
            signal = (
                signal[int(part)] if part.isdigit() else getattr(signal, part, None)
            )
            if signal is None:
                raise PlanArgumentError(
                    f"the PandA has no {path.upper()} (the wiring names a block this "
                    "PandA does not have)"
                )
        settings[signal] = value
    return settings


def check_blocks(panda: HDFPanda, blocks: Sequence[str]) -> None:
    """Raise unless the PandA has each ``"SEQ1"``-style block."""
    for block in blocks:
        ref = parse_field(f"{block}.X")
        vector = getattr(panda, ref.block.lower(), None)
        if vector is None or ref.number is None or ref.number not in vector:
            raise PlanArgumentError(
                f"the wiring uses {block}, which this PandA does not have"
            )


async def check_data_directories(
    panda: HDFPanda, detectors: Sequence[StandardDetector]
) -> None:
    """Ask each writer (the PandA's IOC, each areaDetector HDF5 plugin) whether
    it can write where its path provider points, as the writer's host sees it.

    The same question ophyd-async asks in ``prepare``, asked before the run
    opens: a missing or read-only directory is then a
    :class:`PlanArgumentError` with no run, no file and nothing armed. Only
    path PVs are written; ``prepare`` sets them again. Writers this does not
    recognise are left to ``prepare``.
    """
    checks = []
    provider = getattr(panda, "path_provider", None)
    if provider is not None:
        checks.append(_check_panda_directory(panda, provider))
    for det in detectors:
        for logic in detector_data_logics(det):
            writer = getattr(logic, "writer", None)
            provider = getattr(logic, "path_provider", None)
            if provider is not None and _is_ad_file_writer(writer):
                checks.append(_check_ad_directory(det.name, writer, provider))
    problems = [p for p in await asyncio.gather(*checks) if p]
    if problems:
        raise PlanArgumentError(
            "; ".join(problems) + ": create the directory (writable by the IOC's "
            "user) or point the path provider somewhere else"
        )


def _writable_ancestor(info: Any) -> Any:
    """The directory that must already exist: the writers create up to
    ``-create_dir_depth`` levels below it."""
    path = info.directory_path
    depth = info.create_dir_depth
    if depth < 0:
        return path.parents[min(-depth, len(path.parents)) - 1]
    return path


def _is_ad_file_writer(writer: Any) -> bool:
    return all(
        hasattr(writer, name)
        for name in ("file_path", "file_path_exists", "create_directory")
    )


async def _check_panda_directory(panda: HDFPanda, provider: Any) -> str | None:
    directory = _writable_ancestor(provider(panda.name))
    await panda.data.create_directory.set(0)
    await panda.data.hdf_directory.set(str(directory))
    if await panda.data.directory_exists.get_value():
        return None
    return f"the PandA's IOC cannot write to {directory} (missing or not writable)"


async def _check_ad_directory(name: str, writer: Any, provider: Any) -> str | None:
    directory = _writable_ancestor(provider(name))
    await writer.create_directory.set(0)
    await writer.file_path.set(f"{directory}/")
    if await writer.file_path_exists.get_value():
        return None
    return f"detector {name} cannot write to {directory} (missing or not writable)"


async def prime_datasets(
    panda: HDFPanda, settings: Settings[HDFPanda], timeout: float = 5.0
) -> None:
    """Make the IOC's DATA:DATASETS table list what ``settings`` capture
    before ophyd-async's prepare reads it.

    PandABlocks-ioc 0.11 rewrites the table when a capture starts, the Name
    column and then the DType column, and ophyd-async reads it straight after
    starting the capture: it then sees the previous run's names (a stream
    resource per old dataset) or, when their number changed, columns of
    different lengths (a validation error). So when the table is not already
    right, start a capture (no PCAP arm, so no data and no file), wait for
    the table to show the new names in both columns, and stop it.
    """
    by_name = {sig.name: value for sig, value in settings.items()}
    wanted = [
        str(value)
        for name, value in by_name.items()
        if name.endswith("_dataset")
        and value
        and by_name.get(name.removesuffix("_dataset") + "_capture", "No") != "No"
    ]
    await prime_dataset_names(panda, wanted, timeout)


async def prime_dataset_names(
    panda: HDFPanda, names: Sequence[str], timeout: float = 5.0, exact: bool = True
) -> None:
    """:func:`prime_datasets` for captures already applied: make DATA:DATASETS
    list ``names`` (the datasets captured) in both its columns; with
    ``exact=False``, at least those (others may be captured too)."""
    wanted = sorted(names)

    async def table() -> tuple[list[str], int] | None:
        try:
            found = await panda.data.datasets.get_value()
        except Exception:  # read between the two column updates
            return None
        names = sorted(found.name)
        if not exact and set(wanted) <= set(names) and len(names) == len(found.dtype):
            return wanted, len(wanted)  # settled, with others besides
        return names, len(found.dtype)

    now = await table()
    if not wanted or now == (wanted, len(wanted)):
        return
    await panda.data.capture.set(True)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (now := await table()) != (wanted, len(wanted)):
            if loop.time() > deadline:
                raise TimeoutError(
                    f"the PandA IOC's DATA:DATASETS shows {now} {timeout:g} s after "
                    f"a capture started, not {wanted}"
                )
            await asyncio.sleep(0.02)  # the IOC posts no event for "both columns"
    finally:
        await panda.data.capture.set(False)


def panda_row_bytes(settings: Settings[HDFPanda]) -> int:
    """Bytes the PandA's file takes per row with these capture settings (one
    dataset per word of a ``*_capture`` value: "Min Max Mean" is three)."""
    values = 0
    for signal, value in settings.items():
        name = signal.name
        word = str(getattr(value, "value", value))  # an enum's value
        if name.endswith("_capture") and word not in ("No", ""):
            values += len(word.split())
    return max(values, 1) * PANDA_BYTES_PER_VALUE


async def check_free_space(
    panda: HDFPanda,
    rows: int,
    row_bytes: int,
    detectors: Sequence[tuple[StandardDetector, int]] = (),
) -> None:
    """Refuse a scan whose data will not fit: the PandA's ``rows`` x
    ``row_bytes`` and each detector's frames x its frame size (from its
    driver's array size and data type), summed per filesystem, against the
    free space there less :data:`FREE_SPACE_FLOOR`.

    Only directories this host sees are checked (a writer on another host
    sees its own disks: the health watch cannot check those either).
    """
    needs: list[tuple[Path, int, str]] = []
    provider = getattr(panda, "path_provider", None)
    if provider is not None:
        directory = _writable_ancestor(provider(panda.name))
        needs.append((directory, rows * row_bytes, f"the PandA's {rows} rows"))
    for det, frames in detectors:
        frame = await _frame_bytes(det)
        for logic in detector_data_logics(det):
            provider = getattr(logic, "path_provider", None)
            if provider is not None and frame:
                directory = _writable_ancestor(provider(det.name))
                needs.append(
                    (directory, frames * frame, f"{det.name}'s {frames} frames")
                )
    by_device: dict[int, tuple[Path, int, list[str]]] = {}
    for directory, need, what in needs:
        existing = _existing(Path(directory))
        if existing is None:
            continue
        dev = os.stat(existing).st_dev
        where, total, whats = by_device.get(dev, (existing, 0, []))
        by_device[dev] = (where, total + need, [*whats, what])
    for where, total, whats in by_device.values():
        need = int(total * ESTIMATE_MARGIN) + FREE_SPACE_FLOOR
        free = shutil.disk_usage(where).free
        if free < need:
            raise PlanArgumentError(
                f"not enough free space in {where}: the scan needs about "
                f"{_mb(need)} ({' and '.join(whats)}, with {_mb(FREE_SPACE_FLOOR)} "
                f"kept free) but {_mb(free)} are free. Free space there, point the "
                "path provider at a bigger disk, or plan fewer points"
            )


def _existing(path: Path) -> Path | None:
    """``path`` or its nearest existing ancestor (None: none visible)."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate if candidate != Path(candidate.anchor) else None
    return None


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


async def _frame_bytes(det: StandardDetector) -> int:
    """Bytes of one frame of an areaDetector-style detector (0: unknown)."""
    driver = getattr(det, "driver", None)
    try:
        x, y, kind = await asyncio.gather(
            driver.array_size_x.get_value(),  # type: ignore[union-attr]
            driver.array_size_y.get_value(),  # type: ignore[union-attr]
            driver.data_type.get_value(),  # type: ignore[union-attr]
        )
    except Exception:  # not an areaDetector driver, or no such records
        return 0
    itemsize = {
        "Int8": 1,
        "UInt8": 1,
        "Int16": 2,
        "UInt16": 2,
        "Int32": 4,
        "UInt32": 4,
        "Int64": 8,
        "UInt64": 8,
        "Float32": 4,
        "Float64": 8,
    }
    return int(x) * max(int(y), 1) * itemsize.get(str(getattr(kind, "value", kind)), 8)
