"""Turn-key PandA flyscans: ophyd-async devices, bluesky plans, Tiled storage."""

__version__ = "0.1.0"
