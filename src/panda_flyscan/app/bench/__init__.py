"""The panda-flyscan benchmark suite: ``panda-flyscan bench``.

* :mod:`benchmarks.suite`: the measurements (one registry entry each) and the
  simulated beamline, Tiled service and RunEngine they share;
* :mod:`benchmarks.stats`: figures, their median/min/max, ratios measured side
  by side, the printed table and the JSON record;
* :mod:`benchmarks.plot`: scan efficiency against N as a PNG;
* ``plans_bench.py``, ``storage_bench.py``, ``sim_bench.py``: the single-topic
  benchmarks (each also a script), whose functions the suite calls.

See docs/benchmarks.md.
"""
