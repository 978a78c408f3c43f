"""The panda-flyscan benchmark suite: ``panda-flyscan bench``.

* :mod:`~.suite`: the registry of measurements, :class:`~.suite.Suite` (what
  they share) and :func:`~.suite.run_suite`; :mod:`~.budget`: the options
  and how many runs of what size each figure gets; :mod:`~.context`: the
  simulated beamline, Tiled service and RunEngine shared by all;
* the measurements, by what they measure: :mod:`~.measure_scans` (scan
  efficiency, latency, first trigger), :mod:`~.measure_capture`,
  :mod:`~.measure_storage` (writers, read-back), :mod:`~.measure_startup`;
* :mod:`~.stats`: figures, their median/min/max, ratios measured side by
  side, the printed table and the JSON record; :mod:`~.plot`: scan
  efficiency against N as a PNG;
* the single-topic benchmarks, each also a script
  (``.venv/bin/python -m panda_flyscan.app.bench.<name> --help``):
  :mod:`~.plans_bench`, :mod:`~.storage_bench`, and :mod:`~.sim_bench`
  (capture rates of the simulator alone and through the IOC, from
  :mod:`~.capture_setup`, :mod:`~.sim_stream`, :mod:`~.ioc_capture`,
  :mod:`~.profiling` and :mod:`~.cpu`).

See docs/benchmarks.md.
"""
