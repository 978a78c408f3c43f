"""A second, independent real client against the simulated PandA:
fastcs-pandablocks (the FastCS PandA IOC ophyd-async's ``fastcs.panda`` also
targets), in its own venv (``tests/fastcs/.venv``, made by scripts/setup.sh).

It introspects every block of a simulated PandA, serves PVA on loopback only,
and ophyd-async's ``HDFPanda`` drives a SEQ-triggered capture that its own
HDF5 writer stores. fastcs-pandablocks 0.2.2 does not forward puts to the
``*_CAPTURE`` attributes, so CAPTURE (and the wiring) is set on the control
port.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from p4p.client.asyncio import Context
from pandablocks.asyncio import AsyncioClient
from pandablocks.commands import GetBlockInfo, Raw

from panda_flyscan.app.simulated.epics_env import client_env, ioc_env, without_epics
from panda_flyscan.app.simulated.ports import free_epics_ports, free_loopback_hosts
from panda_flyscan.processes import ManagedProcess

ROOT = Path(__file__).resolve().parents[2]
FASTCS_PYTHON = ROOT / "tests" / "fastcs" / ".venv" / "bin" / "python"
PREFIX = "FCSPANDA"
#: fastcs prints this once its PVA server runs (after introspection).
READY = re.compile(r".*Running IOC.*")
#: A log level column as fastcs's logger writes it: ``... +0000 W]``.
WARNING = re.compile(r"\+\d{4} [WEC]\]")
#: What fastcs-pandablocks warns about with a real PandA too: the firmware's
#: multi-line LAYOUT and EXPORTS keys are reported by the real server, and
#: fastcs-pandablocks expects only LABEL_ and DESIGN keys.
UPSTREAM_WARNINGS = ("*METADATA.LAYOUT", "*METADATA.EXPORTS")
TICKS_PER_US = 125

pytestmark = pytest.mark.skipif(
    not FASTCS_PYTHON.exists(),
    reason="fastcs-pandablocks venv missing: run scripts/setup.sh "
    "(creates tests/fastcs/.venv)",
)


@dataclass(frozen=True)
class FastcsPanda:
    """A simulated PandA and fastcs-pandablocks serving it."""

    host: str
    prefix: str
    log: Path
    context: Context


def _start(process: ManagedProcess, timeout: float) -> None:
    process.start()
    process.wait_ready(timeout)


@pytest.fixture
async def fastcs_panda(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FastcsPanda]:
    host = next(free_loopback_hosts(60))
    ports = free_epics_ports()
    config = tmp_path / "fastcs.yaml"
    config.write_text(
        "controllers:\n"
        f"  - id: {PREFIX}\n"
        "    type: fastcs_pandablocks.PandaController\n"
        f"    address: {host}\n"
        "transport:\n"
        "  - epicspva: {}\n"
    )
    base_env = without_epics(os.environ)
    panda = ManagedProcess(
        "panda",
        [sys.executable, "-m", "sim_ioc.panda", "--host", host],
        tmp_path / "panda.log",
        base_env,
        cwd=ROOT,
        ready="READY",
    )
    fastcs = ManagedProcess(
        "fastcs-pandablocks",
        [str(FASTCS_PYTHON), "-m", "fastcs_pandablocks", "run", str(config)],
        tmp_path / "fastcs.log",
        # Its PVA server on this test's ports, on 127.0.0.1 only.
        {**base_env, **ioc_env(ports)},
        cwd=tmp_path,
        ready=READY,
        # fastcs runs an interactive shell on stdin: closing it stops fastcs.
        keep_stdin_open=True,
    )
    # ophyd-async's PVA client context, pointed at this IOC only for the test
    # (this process's environment belongs to the session's beamline).
    pva = {k: v for k, v in client_env(ports).items() if k.startswith("EPICS_PVA")}
    context = Context("pva", nt=False, conf=pva, useenv=False)
    import ophyd_async.epics.core._p4p as p4p_backend

    monkeypatch.setattr(p4p_backend, "_context", context)
    try:
        # Blocking waits, but nothing else runs on this loop yet.
        _start(panda, 10)
        _start(fastcs, 60)
        yield FastcsPanda(host, f"{PREFIX}:", fastcs.log_path, context)
    finally:
        fastcs.stop()
        panda.stop()
        context.close()


def warnings_in(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if WARNING.search(line)]


async def send(host: str, *lines: str) -> None:
    async with AsyncioClient(host) as client:
        for line in lines:
            await client.send(Raw([line]))


async def test_fastcs_pandablocks_captures_seq_triggers(
    fastcs_panda: FastcsPanda, tmp_path: Path
) -> None:
    from ophyd_async.core import (
        DetectorTrigger,
        StaticFilenameProvider,
        StaticPathProvider,
        TriggerInfo,
        init_devices,
    )
    from ophyd_async.fastcs.panda import HDFPanda

    # Start-up: every block introspected, and no warning the simulator causes.
    warnings = warnings_in(fastcs_panda.log)
    unexpected = [w for w in warnings if not any(k in w for k in UPSTREAM_WARNINGS)]
    assert unexpected == [], "\n".join(unexpected)
    # (Which also shows the log's warnings are recognised.)
    assert sorted(k for w in warnings for k in UPSTREAM_WARNINGS if k in w) == sorted(
        UPSTREAM_WARNINGS
    )
    assert not any("APPNAME" in w for w in warnings)
    async with AsyncioClient(fastcs_panda.host) as client:
        blocks = await client.send(GetBlockInfo())
    pvi = await asyncio.wait_for(
        fastcs_panda.context.get(f"{fastcs_panda.prefix}PVI"), timeout=10
    )
    value: Any = pvi  # a p4p Value: one get of one PV
    served = {name.upper() for name in value.todict()["value"]}
    assert set(blocks) <= served

    frames, period_us, pulse_us = 200, 1000, 200
    # SEQ1 pulses OUTA; PCAP captures TS_TRIG on each rising edge while SEQ1
    # is active. CAPTURE on the control port: see the module docstring.
    await send(
        fastcs_panda.host,
        "SEQ1.ENABLE=ZERO",
        "SEQ1.PRESCALE.UNITS=us",
        "SEQ1.PRESCALE=1",
        "SEQ1.REPEATS=1",
        "PCAP.ENABLE=SEQ1.ACTIVE",
        "PCAP.GATE=ONE",
        "PCAP.TRIG=SEQ1.OUTA",
        "PCAP.TRIG_EDGE=Rising",
        "PCAP.TS_TRIG.CAPTURE=Value",
    )
    # One row (REPEATS 15:0, TRIGGER 19:16 Immediate, OUTA1 bit 20; POSITION;
    # TIME1; TIME2): `frames` times OUTA high for pulse_us, then low.
    row = [frames | 1 << 20, 0, pulse_us, period_us - pulse_us]
    async with AsyncioClient(fastcs_panda.host) as client:
        await client.send(Raw(["SEQ1.TABLE<", *(str(w) for w in row), ""]))

    provider = StaticPathProvider(StaticFilenameProvider("fastcs_seq"), tmp_path)
    async with init_devices():
        panda = HDFPanda(fastcs_panda.prefix, provider)
    await panda.stage()
    try:
        await panda.prepare(
            TriggerInfo(number_of_events=frames, trigger=DetectorTrigger.EXTERNAL_LEVEL)
        )
        await panda.kickoff()
        await send(fastcs_panda.host, "SEQ1.ENABLE=ONE")
        await asyncio.wait_for(panda.complete(), timeout=60)
    finally:
        await send(fastcs_panda.host, "SEQ1.ENABLE=ZERO")
        await panda.unstage()

    path = tmp_path / "fastcs_seq.h5"
    # fastcs-pandablocks closes its file a moment after the capture ends and
    # says so nowhere: retry the open (bounded) while it is still writing.
    for _ in range(100):
        try:
            h5py.File(path, "r").close()
            break
        except OSError:
            await asyncio.sleep(0.1)
    with h5py.File(path) as f:
        [name] = [str(n) for n in f if "TS_TRIG" in str(n).upper()]
        ts_trig = np.asarray(f[name])
    assert len(ts_trig) == frames
    ticks = np.rint(ts_trig / 8e-9).astype(np.int64)
    np.testing.assert_allclose(ts_trig, ticks * 8e-9, atol=1e-12)
    np.testing.assert_array_equal(np.diff(ticks), period_us * TICKS_PER_US)
    # Still nothing the simulator caused, after a whole acquisition.
    after = [w for w in warnings_in(fastcs_panda.log) if w not in warnings]
    assert after == [], "\n".join(after)
