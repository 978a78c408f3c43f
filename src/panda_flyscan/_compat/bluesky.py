"""bluesky's private API: whether the RunEngine's event loop is running.

Candidate upstream issue: ``bluesky.run_engine.in_bluesky_event_loop()`` says
whether the *caller* runs in that loop; nothing public says whether the loop
exists and runs, which is what code called from IPython (another thread) needs
before ``call_in_bluesky_event_loop``, so as to fail with a clear message
instead of a timeout.
"""

from __future__ import annotations

from bluesky import run_engine

from . import require

require("bluesky", "~=1.15", uses="bluesky.run_engine._bluesky_event_loop")

__all__ = ["bluesky_loop_running"]


def bluesky_loop_running() -> bool:
    """Whether a RunEngine's event loop exists and is running."""
    loop = run_engine._bluesky_event_loop
    return loop is not None and loop.is_running()
