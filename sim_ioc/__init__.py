"""The simulated beamline: a behavioural PandABox, motor and detector.

The real, unmodified PandABlocks-ioc runs against :mod:`sim_ioc.panda`.
"""
