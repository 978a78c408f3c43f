"""The readiness probe: waits, in a child process, until a beamline's PVs answer.

It runs with the client environment, so it checks exactly what a client will
see (the address lists included), and leaves the parent's own CA and PVA
contexts (which read ``os.environ`` once) untouched. It uses p4p and aioca,
the clients ophyd-async uses.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...polling import poll_until
from ...processes import ManagedProcess
from .errors import BeamlineError

__all__ = ["probe_main", "run_probe"]

_PROBE_CODE = (
    f"import sys; from {__name__} import probe_main; sys.exit(probe_main(sys.argv[1]))"
)


def probe_main(spec: str) -> int:
    """Wait until every PV in ``spec`` answers; 0 when they all do, 1 if not.

    ``spec`` is JSON: ``{"pva": [names], "ca": {name: wanted int or null},
    "timeout": seconds}``. Uses p4p and aioca, the clients ophyd-async uses.
    """
    import asyncio

    from aioca import caget
    from p4p.client.asyncio import Context

    params: dict[str, Any] = json.loads(spec)
    pva: set[str] = set(params["pva"])
    ca: dict[str, int | None] = dict(params["ca"])
    deadline = time.monotonic() + float(params["timeout"])
    problems: dict[str, str] = {}

    async def check() -> int:
        with Context("pva") as ctx:  # reads the EPICS_PVA_* we were given
            while True:
                for name in sorted(pva):
                    try:
                        await asyncio.wait_for(ctx.get(name), timeout=1.0)
                    except Exception as exc:
                        problems[name] = f"PVA: {exc!r}"
                    else:
                        pva.discard(name)
                        problems.pop(name, None)
                for name, wanted in sorted(ca.items()):
                    try:
                        value: Any = await caget(name, timeout=1.0)
                    except Exception as exc:
                        problems[name] = f"CA: {exc!r}"
                        continue
                    if wanted is not None and int(value) != wanted:
                        problems[name] = f"CA: {value!r}, waiting for {wanted}"
                        continue
                    del ca[name]
                    problems.pop(name, None)
                if not pva and not ca:
                    print("ALL ANSWERED", flush=True)
                    return 0
                if time.monotonic() >= deadline:
                    for name, problem in sorted(problems.items()):
                        print(f"{name}: {problem}", flush=True)
                    return 1
                await asyncio.sleep(0.2)

    return asyncio.run(check())


def run_probe(
    *,
    pva: Sequence[str],
    ca: Mapping[str, int | None],
    timeout: float,
    log_path: Path,
    env: Mapping[str, str],
    watch: Sequence[ManagedProcess],
    stop_timeout: float,
) -> ManagedProcess:
    """Run the probe until it ends: every PV of ``pva`` answering over PVA,
    every one of ``ca`` over CA (with the value given, unless None), within
    ``timeout`` seconds.

    Returns the ended probe: exit code 0 if everything answered, else 1 with
    what did not in its log. BeamlineError if one of ``watch`` exits meanwhile,
    or if the probe hangs.
    """
    spec = {"pva": list(pva), "ca": dict(ca), "timeout": timeout}
    probe = ManagedProcess(
        "probe", [sys.executable, "-c", _PROBE_CODE, json.dumps(spec)], log_path, env
    )
    probe.start()
    # The probe keeps its own deadline; this one only guards against a probe
    # that hangs (its imports and clean-up get a generous margin).

    def probe_done() -> bool:
        for process in watch:
            if process.exited():
                raise BeamlineError(
                    process.failure(f"{process.name} exited during start-up")
                )
        return probe.exited()

    try:
        poll_until(
            probe_done,
            timeout=timeout + 30,
            interval=0.1,
            on_timeout=lambda: BeamlineError(probe.failure("the readiness probe hung")),
        )
    finally:
        probe.stop(stop_timeout)
    return probe
