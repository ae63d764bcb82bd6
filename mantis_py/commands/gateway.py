"""`mantis-py gateway [--host H] [--port P] [--config gateway.toml]`: run a gateway (SYSTEM.md §3.2).

Bad flags or a bad config file print one line and exit 2; a port in use exits 1; Ctrl-C and
SIGTERM stop the gateway cleanly (exit 0). See docs/operations.md.
"""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import sys

__all__ = ["HELP", "add_arguments", "run"]

HELP = "run a gateway: agents and clients connect here (see docs/operations.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7100; 0: any)")
    parser.add_argument("--config", default=None, metavar="FILE", help="TOML config file")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="log verbosity")


def run(args: argparse.Namespace) -> int:
    import trio

    from mantis_py.errors import ConfigurationError
    from mantis_py.gateway.config import load_config
    from mantis_py.gateway.server import serve_gateway

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every handshake failure with the request line; ours are already counted.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        config = load_config(args.config, host=args.host, port=args.port)
    except ConfigurationError as exc:
        print(f"mantis-py gateway: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(lambda task_status: serve_gateway(
                config, task_status=task_status))
            scheme = "https" if config.tls else "http"
            print(f"mantis-py gateway on {scheme}://{config.host}:{server.port}/", flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    # Clients get 1001 "going away" (and reconnect), not a torn connection.
                    await server.go_away(1.0)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except BaseException as exc:  # trio wraps errors of nursery tasks in exception groups
        first = _first_error(exc)
        if isinstance(first, OSError):
            why = first.strerror or str(first)
            if first.errno == errno.EADDRINUSE:
                why = "the port is already in use (another gateway or demo running?)"
            print(f"mantis-py gateway: cannot listen on {config.host}:{config.port}: {why}",
                  file=sys.stderr)
            return 1
        if isinstance(first, ConfigurationError):
            print(f"mantis-py gateway: {first}", file=sys.stderr)
            return 2
        raise
    return 0


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (the exception itself when it is not a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
