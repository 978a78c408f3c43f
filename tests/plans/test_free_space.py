"""The pre-run free-space check (no IOC: a stand-in PandA with a path
provider, the real filesystem of pytest's temporary directory)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from ophyd_async.core import StrictEnum

from panda_flyscan.plans.errors import PlanArgumentError
from panda_flyscan.plans.prechecks import (
    FREE_SPACE_FLOOR,
    check_free_space,
    panda_row_bytes,
)


def _panda(directory: Path) -> object:
    info = SimpleNamespace(directory_path=directory, create_dir_depth=0)
    return SimpleNamespace(name="panda", path_provider=lambda name: info)


async def test_a_scan_that_fits_passes(tmp_path: Path) -> None:
    await check_free_space(_panda(tmp_path), 1000, 16)  # type: ignore[arg-type]


async def test_a_scan_bigger_than_the_disk_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    free = shutil.disk_usage(tmp_path).free
    rows = free // 16 + 1
    with pytest.raises(PlanArgumentError) as raised:
        await check_free_space(_panda(tmp_path), rows, 16)  # type: ignore[arg-type]
    message = str(raised.value)
    assert str(tmp_path) in message and f"the PandA's {rows} rows" in message
    assert "plan fewer points" in message


async def test_the_floor_is_kept_free(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    # Fits the disk but not with the floor kept free.
    rows = (free - FREE_SPACE_FLOOR // 2) // 16
    with pytest.raises(PlanArgumentError):
        await check_free_space(_panda(tmp_path), int(rows), 16)  # type: ignore[arg-type]


async def test_a_directory_yet_to_be_made_is_checked_where_it_will_be(
    tmp_path: Path,
) -> None:
    later = tmp_path / "2026" / "run-1"
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(PlanArgumentError, match=str(tmp_path)):
        await check_free_space(_panda(later), free, 16)  # type: ignore[arg-type]


def test_row_bytes_count_every_captured_word() -> None:
    @dataclass(frozen=True)
    class setting:  # what panda_row_bytes reads of a signal
        name: str

    class Mode(StrictEnum):  # as the IOC's capture modes are
        MIN_MAX_MEAN = "Min Max Mean"

    settings = {
        setting("panda-inenc-1-val_capture"): "Value",
        setting("panda-calc-1-out_capture"): Mode.MIN_MAX_MEAN,
        setting("panda-counter-1-out_capture"): "No",
        setting("panda-pcap-ts_trig_capture"): "Value",
        setting("panda-seq-1-repeats"): 3,
    }
    assert panda_row_bytes(settings) == 5 * 8  # type: ignore[arg-type]
