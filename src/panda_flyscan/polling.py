"""Waiting for a condition that no event announces (another process's state).

One helper on tenacity, used wherever the project must poll: a child process
exiting, a server starting to answer, a file that another process closes.
Where an event, a status or a pipe exists, wait on that instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import tenacity

__all__ = ["poll_until"]

T = TypeVar("T")


def poll_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
    on_timeout: Callable[[], BaseException] | None = None,
) -> T:
    """Call ``condition`` every ``interval`` s until it returns a true value.

    Args:
        condition: Returns the value to wait for, or something false.
        timeout: Seconds before giving up.
        interval: Seconds between calls.
        retry_on: Exceptions of ``condition`` that mean "not yet" (the last one
            is re-raised on time-out unless ``on_timeout`` is given).
        on_timeout: Makes the exception raised on time-out; default
            :class:`TimeoutError`.

    Returns:
        The first true value ``condition`` returned.
    """
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout),
        wait=tenacity.wait_fixed(interval),
        retry=(
            tenacity.retry_if_result(lambda value: not value)
            | tenacity.retry_if_exception_type(retry_on)
        ),
        reraise=True,
    )
    try:
        return retrying(condition)
    except tenacity.RetryError:
        pass
    except retry_on:
        if on_timeout is None:
            raise
    if on_timeout is not None:
        raise on_timeout()
    raise TimeoutError(f"not true after {timeout:g} s: {condition!r}")
