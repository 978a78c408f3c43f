"""The application layer: the ``panda-flyscan`` command tree, the demo, the
benchmarks, and the client side of the simulated beamline.

The only code that imports both the library (:mod:`panda_flyscan.devices`,
:mod:`~panda_flyscan.plans`, :mod:`~panda_flyscan.storage`) and the simulator
(:mod:`sim_ioc`). See docs/architecture.md.
"""
