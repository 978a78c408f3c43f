"""SIGTERM to the process running a flyscan (``panda-flyscan demo``, its own
simulated beamline and Tiled): the scan stops within seconds, the run is
closed "abort" with the reason and every row the file holds, the process
exits 143 having stopped what it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fault_table import Outcome, record

from panda_flyscan.polling import poll_until
from panda_flyscan.storage import TiledService, read_field
from panda_flyscan.storage.hdf5 import read_datasets

pytestmark = pytest.mark.ioc


def _rows_flowing(journal: Path) -> bool:
    """The demo's writer journal holds a StreamDatum: rows are flowing."""
    return any('"stream_datum"' in p.read_text() for p in journal.glob("*.jsonl"))


def test_sigterm_stops_the_demo_and_closes_the_run(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    cli = Path(sys.executable).with_name("panda-flyscan")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    args = ["demo", "--frames", "100000", "--period", "1e-3", "--no-progress"]
    demo = subprocess.Popen(
        [str(cli), *args, "--data-dir", str(data), "--prefix", "SIGT"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        # Across processes there is no event to wait on: the journal's file.
        poll_until(lambda: _rows_flowing(data / "journal"), timeout=120)
        sent = time.monotonic()
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    print(f"\nSIGTERM: the demo exited {demo.returncode} after {took:.1f} s")
    print(output[-600:])
    assert demo.returncode == 128 + signal.SIGTERM, output
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    assert took <= 30  # stop, disarm, collect, close, then every server stopped
    # The run, read back through a new Tiled on the demo's catalog.
    panda_dir = data / "panda"
    with TiledService(data / "tiled", readable=[panda_dir.resolve()]) as tiled:
        client = tiled.client()
        [uid] = list(client)
        stop = client[uid].metadata["stop"]
        assert stop["exit_status"] == "abort"
        assert "SIGTERM" in stop["reason"]
        rows = read_field(client, uid, "primary", "trigger_time")
    [path] = panda_dir.rglob("*.h5")
    (in_file,) = read_datasets(path, "trigger_time", timeout=5)
    assert 0 < len(rows) == len(in_file) < 100_000
    assert stop["num_events"] == {"primary": len(rows)}
    np.testing.assert_array_equal(rows, in_file)
    record(
        Outcome(
            "SIGTERM to the process running the plan (panda-flyscan demo)",
            took,
            f"exit status {demo.returncode}; run closed abort: {stop['reason']}",
            len(in_file),
            len(rows),
            None,
            "test_sigterm_stops_the_demo_and_closes_the_run",
        )
    )
