"""panda-flyscan's bluesky-queueserver start-up profile.

The RE Manager's worker runs this file (``start-re-manager --startup-dir``
this directory) each time its environment is opened. Everything is built by
:func:`panda_flyscan.app.queue.session.open_session` from the worker's
environment (:mod:`panda_flyscan.app.queue.settings`; ``panda-flyscan queue
serve`` sets it): the RunEngine ``RE`` writing every run into Tiled, the
beamline's devices under their names (``panda``, ``x``, ``y``, ``z``,
``det``, ``det2`` on the simulated beamline) and the plans (``spec_scan``,
``time_scan``, ``position_scan``, ``async_scan``, ``count``, ``scan``,
``mv``). Names starting with ``_`` are hidden from clients
(``user_group_permissions.yaml``).
"""

from panda_flyscan.app.queue.session import open_session as _open_session

_session = _open_session()
globals().update(_session.namespace())
