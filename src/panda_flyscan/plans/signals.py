"""SIGTERM and SIGHUP end a running flyscan as two Ctrl-C do.

A process manager (systemd, a container runtime, a queue server stopping
its worker) sends SIGTERM; Python's default is to die at once, leaving the
run open (no stop document) and the PandA armed. Inside
:func:`stop_flyscans_on_signals` the signal instead asks the RunEngine for an
immediate pause: a flyscan has no checkpoint, so the RunEngine aborts it and
the plan's clean-up runs (triggers stopped, PandA disarmed, the rows kept,
the run closed with exit status "abort" and a reason naming the signal).
``RE(...)`` then raises ``RunEngineInterrupted``.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any

__all__ = ["interrupting_signal", "stop_flyscans_on_signals"]

#: The signal that interrupted the running plan, if any (one RunEngine per
#: process runs plans: the one the handler was installed for).
_received: list[str] = []


def interrupting_signal() -> str | None:
    """The name of the signal that interrupted the plan, or None (Ctrl-C)."""
    return _received[-1] if _received else None


@contextlib.contextmanager
def stop_flyscans_on_signals(
    RE: Any, signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGHUP)
) -> Iterator[None]:
    """Within the block, ``signals`` abort the plan ``RE`` runs (see the
    module); the previous handlers come back on leaving it. Main thread only
    (Python's rule for signal handlers)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        _received.append(signal.Signals(signum).name)
        if RE.state == "running":
            # As bluesky's second Ctrl-C does: an immediate pause. From this
            # (the main) thread: request_pause waits on the RE's loop thread.
            RE.request_pause(defer=False)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    _received.clear()
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
