"""What the plans ask of any detector beyond ophyd-async's ``StandardDetector``.

The plans look for a ``dropped_triggers`` signal on any detector (or its
``driver``, see :func:`dropped_triggers_signal`): a detector that counts
missed triggers can expose one and get the plans' dropped-trigger check.
"""

from __future__ import annotations

from typing import Any

from ophyd_async.core import SignalR

__all__ = ["dropped_triggers_signal"]


def dropped_triggers_signal(detector: Any) -> SignalR[int] | None:
    """The detector's count of dropped triggers, if it has one.

    Looked up as ``detector.dropped_triggers`` or
    ``detector.driver.dropped_triggers``; the count must restart when the
    detector is armed (as areaDetector counters do on ``Acquire=1``).
    """
    for owner in (detector, getattr(detector, "driver", None)):
        signal = getattr(owner, "dropped_triggers", None)
        if isinstance(signal, SignalR):
            return signal
    return None
