"""Real devices writing real HDF5 files, for the storage tests.

``SimPandaHDF`` is an ophyd-async ``StandardDetector`` laid out like the
PandA's HDF writer (``ophyd_async.fastcs.panda.PandaHDFDataLogic``): one HDF5
file per acquisition, one 1-D float64 dataset per captured field named by its
DATASET name (``/counter1``...), SWMR, chunks of 1024, and one StreamResource per
dataset built by ophyd-async's own ``StreamResourceDataProvider``. The values
are a deterministic function of the row index so tests can check them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    PathProvider,
    StandardDetector,
    StaticFilenameProvider,
    StaticPathProvider,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    TriggerInfo,
    soft_signal_r_and_setter,
)

#: DATASET names of the captured fields (COUNTER1.OUT Value, INENC1.VAL Mean,
#: PCAP.TS_TRIGGER Value): the data keys and the HDF5 dataset paths.
PANDA_DATASETS = ("counter1", "inenc1_mean", "trigger_time")


def panda_row(index: int) -> dict[str, float]:
    """Values of capture row ``index`` (0-based)."""
    return {
        "counter1": float(3 * index + 1),
        "inenc1_mean": float(np.sin(0.1 * index) * 1000.0),
        "trigger_time": 0.01 * index,
    }


@dataclass
class _PandaState:
    path: Path | None = None
    file: h5py.File | None = None
    rows: int = 0
    number: int = 1
    period: float = 0.01
    captured: object = None
    set_captured: object = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def open(self, path: Path) -> None:
        self.file = h5py.File(path, "w", libver="latest")
        for name in PANDA_DATASETS:
            self.file.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype="<f8", chunks=(1024,)
            )
        self.file.swmr_mode = True
        self.path = path
        self.rows = 0

    def write_row(self) -> None:
        assert self.file is not None
        values = panda_row(self.rows)
        for name in PANDA_DATASETS:
            dset = self.file[name]
            assert isinstance(dset, h5py.Dataset)
            dset.resize(self.rows + 1, axis=0)
            dset[self.rows] = values[name]
            dset.flush()
        self.rows += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class _Trigger(DetectorTriggerLogic):
    def __init__(self, state: _PandaState) -> None:
        self.state = state

    async def prepare_internal(self, num: int, livetime: float, deadtime: float):
        self.state.number = num
        self.state.period = (livetime + deadtime) or self.state.period

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo()


class _Acquire(DetectorAcquireLogic):
    def __init__(self, state: _PandaState, set_captured) -> None:
        self.state = state
        self.set_captured = set_captured

    async def _capture(self) -> None:
        start = time.monotonic()
        for i in range(1, self.state.number + 1):
            await asyncio.sleep(
                max(0.0, start + i * self.state.period - time.monotonic())
            )
            self.state.write_row()
            self.set_captured(self.state.rows)

    async def start_acquiring(self):
        self.state.task = asyncio.create_task(self._capture())

    async def wait_for_idle(self):
        if self.state.task is not None:
            await self.state.task

    async def ensure_stopped(self):
        if self.state.task is not None:
            self.state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.state.task
            self.state.task = None


class _Data(DetectorDataLogic):
    def __init__(
        self, state: _PandaState, path_provider: PathProvider, captured
    ) -> None:
        self.state = state
        self.path_provider = path_provider
        self.captured = captured

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        info = self.path_provider(datakey_name)
        self.state.open(Path(info.directory_path) / f"{info.filename}.h5")
        resources = [
            StreamResourceInfo(
                data_key=name,
                shape=(),
                dtype_numpy=np.dtype(np.float64).str,
                chunk_shape=(1024,),
                parameters={"dataset": f"/{name}"},
            )
            for name in PANDA_DATASETS
        ]
        return StreamResourceDataProvider(
            uri=f"{info.directory_uri}{info.filename}.h5",
            resources=resources,
            mimetype="application/x-hdf5",
            collections_written_signal=self.captured,
        )

    async def stop(self) -> None:
        self.state.close()

    def get_hinted_fields(self, datakey_name: str) -> list[str]:
        return list(PANDA_DATASETS)


class SimPandaHDF(StandardDetector):
    """A PandA-like HDF5 writer (see module docstring)."""

    def __init__(
        self, directory: Path, filename: str = "panda", name: str = ""
    ) -> None:
        self.state = _PandaState()
        captured, set_captured = soft_signal_r_and_setter(int, initial_value=0)
        path_provider = StaticPathProvider(StaticFilenameProvider(filename), directory)
        self.add_detector_logics(
            _Trigger(self.state),
            _Acquire(self.state, set_captured),
            _Data(self.state, path_provider, captured),
        )
        super().__init__(name=name)

    @property
    def file_path(self) -> Path:
        assert self.state.path is not None
        return self.state.path


def fly_plan(detector: StandardDetector, events: int, period: float = 0.01, md=None):
    """A flyscan of ``detector``: prepare, kickoff, collect while completing.

    The detector emits StreamResource/StreamDatum documents only, as the PandA
    does in a flyscan.
    """
    import bluesky.plan_stubs as bps

    info = TriggerInfo(
        number_of_events=events, livetime=period / 2, deadtime=period / 2
    )
    yield from bps.stage_all(detector)
    uid = yield from bps.open_run(md=md or {})
    yield from bps.prepare(detector, info, wait=True)
    yield from bps.declare_stream(detector, name="primary")
    yield from bps.kickoff(detector, wait=True)
    yield from bps.collect_while_completing(
        flyers=[detector], dets=[detector], flush_period=0.1
    )
    yield from bps.close_run()
    yield from bps.unstage_all(detector)
    return uid
