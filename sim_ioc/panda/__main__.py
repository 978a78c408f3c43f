"""``python -m sim_ioc.panda --host 127.0.0.2``: serve one simulated PandA.

Prints ``READY`` once both ports listen; stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging

from .server import run_until_signalled, serve


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sim_ioc.panda", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--control-port", type=int, default=8888)
    parser.add_argument("--data-port", type=int, default=8889)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper())

    run_until_signalled(serve(args.host, args.control_port, args.data_port))


if __name__ == "__main__":
    main()
