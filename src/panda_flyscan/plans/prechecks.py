"""Checks of the connected devices before a run opens (reads only, or path PVs).

The plan's blocks exist on this PandA, the capture and wiring settings fit
it, and every writer (the PandA's IOC, each areaDetector HDF5 plugin) can
write where its path provider points. Each problem is a
:class:`~panda_flyscan.plans.PlanArgumentError` with nothing armed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ophyd_async.core import Settings, StandardDetector
from ophyd_async.fastcs.panda import HDFPanda

from .._compat.ophyd_async import detector_data_logics
from ..devices import Capture, CaptureError
from ..devices.capture import capture_settings, parse_field
from .errors import PlanArgumentError

__all__ = [
    "check_blocks",
    "check_data_directories",
    "check_panda_settings",
    "prime_datasets",
]


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
    wanted = sorted(
        str(value)
        for name, value in by_name.items()
        if name.endswith("_dataset")
        and value
        and by_name.get(name.removesuffix("_dataset") + "_capture", "No") != "No"
    )

    async def table() -> tuple[list[str], int] | None:
        try:
            found = await panda.data.datasets.get_value()
        except Exception:  # read between the two column updates
            return None
        return sorted(found.name), len(found.dtype)

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
