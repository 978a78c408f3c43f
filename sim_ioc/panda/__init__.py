"""A simulated PandABox speaking the PandABlocks-server TCP protocol.

Layers, innermost first:

- :mod:`sim_ioc.panda.models`: pure, tick-exact models of the firmware blocks
  (no sockets, no clocks), checked against the upstream timing vectors by
  :mod:`sim_ioc.panda.conformance`.
- :mod:`sim_ioc.panda.catalog`: the blocks, fields and counts of a PandABox
  with the ACQ427 FMC card, in our own format.
- :mod:`sim_ioc.panda.protocol`: sans-IO control and data protocols.
- :mod:`sim_ioc.panda.engine`: the event-driven simulation wiring models together.
- :mod:`sim_ioc.panda.server`: the asyncio transport on ports 8888/8889.
"""
