"""``python -m sim_ioc.panda --host 127.0.0.2``: serve one simulated PandA.

Prints ``READY`` once both ports listen; stops cleanly on SIGINT or SIGTERM.
The options are those of ``python -m sim_ioc`` (:mod:`sim_ioc.config`) that
concern the PandA's server alone.
"""

from __future__ import annotations

import argparse
import logging

from ..config import add_arguments, config_from_arguments
from .server import run_until_signalled, serve


def main() -> None:
    """Parse the options, then serve until signalled."""
    parser = argparse.ArgumentParser(
        prog="python -m sim_ioc.panda",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser, ("host", "control_port", "data_port", "log_level"))
    config = config_from_arguments(parser, parser.parse_args())
    logging.basicConfig(level=config.log_level)

    run_until_signalled(serve(config.host, config.control_port, config.data_port))


if __name__ == "__main__":
    main()
