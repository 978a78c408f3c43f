"""``python -m panda_flyscan.storage``: the ``panda-flyscan tiled`` commands.

:class:`.server.TiledService` starts the server this way, which needs only the
interpreter, not the console script on PATH.
"""

from .cli import tiled

if __name__ == "__main__":
    tiled(prog_name="panda-flyscan tiled")
