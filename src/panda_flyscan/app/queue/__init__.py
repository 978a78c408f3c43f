"""Plans through bluesky-queueserver (``panda-flyscan queue serve``).

* :mod:`.settings`: what the start-up profile reads from its environment.
* :mod:`.session`: what the profile builds (RunEngine, devices, Tiled
  writer, plans); :mod:`.plans`: the plans with JSON arguments (devices by
  name, scanspec specs serialised).
* :mod:`.server`: Redis and the RE Manager (:class:`~.server.QueueServer`),
  with the simulated beamline and Tiled (:class:`~.server.QueueStack`).
* ``profile/``: the start-up directory handed to ``start-re-manager``.

See docs/queue.md.
"""
