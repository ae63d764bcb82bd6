"""`mantis-py gateway [--host H] [--port P] [--config gateway.toml]`: run a gateway (docs/operations.md).

Bad flags or a bad config file print one line and exit 2; a port in use exits 1; Ctrl-C and
SIGTERM stop the gateway cleanly (exit 0). See docs/operations.md.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import signal
import sys
from typing import Any

__all__ = ["HELP", "add_arguments", "run"]

HELP = "run a gateway: agents and clients connect here (see docs/operations.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 7100; 0: any)")
    parser.add_argument("--config", default=None, metavar="FILE", help="TOML config file")
    parser.add_argument("--cluster", default=None, metavar="NATS_URLS",
                        help="join a cluster: nats://host:port[,nats://...] (docs/cluster.md)")
    parser.add_argument("--cluster-name", default=None, metavar="NAME",
                        help="cluster name shared by its gateways (default: mantis)")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="log verbosity")
    # For a parent that runs the gateway as its child (`mantis-py demo`): stop when that process
    # is gone, and remove its temporary directory on the way out.
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--remove-on-exit", default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import trio

    from mantis_py.errors import ConfigurationError
    from mantis_py.gateway.config import load_config
    from mantis_py.gateway.server import serve_gateway
    from mantis_py.oslimits import raise_open_files

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets logs every handshake failure with the request line; ours are already counted.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        config = load_config(args.config, host=args.host, port=args.port)
        config = _with_cluster(config, args.cluster, args.cluster_name)
    except ConfigurationError as exc:
        print(f"mantis-py gateway: {exc}", file=sys.stderr)
        return 2
    # a socket per agent and client, plus listeners, log files and NATS
    want = config.limits.connections_total + config.limits.agent_connections_total + 256
    got = raise_open_files(want)
    if 0 <= got < want:
        logging.getLogger("mantis_py.gateway").warning(
            "open files limited to %d (the connection caps need %d): raise `ulimit -n`", got, want)

    async def main() -> None:
        # The signal receiver spans the whole shutdown: a second SIGTERM during it (a parent's
        # death signal and its own stop request may both arrive) must not kill us half-way.
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(lambda task_status: serve_gateway(
                    config, task_status=task_status))
                scheme = "https" if config.tls else "http"
                print(f"mantis-py gateway on {scheme}://{config.host}:{server.port}/", flush=True)
                if args.parent_pid:
                    nursery.start_soon(_watch_parent, args.parent_pid, server, nursery.cancel_scope)
                async for _ in signals:
                    # Clients get 1001 "going away" (and reconnect), not a torn connection.
                    await server.go_away(1.0)
                    nursery.cancel_scope.cancel()
                    break
            _remove(args.remove_on_exit)

    try:
        trio.run(main)
    except BaseException as exc:
        _remove(args.remove_on_exit)  # trio wraps errors of nursery tasks in exception groups
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


def _with_cluster(config: Any, urls: str | None, name: str | None) -> Any:
    """Apply ``--cluster`` / ``--cluster-name`` over the config file's ``[cluster]``."""
    import dataclasses

    from mantis_py.errors import ConfigurationError
    from mantis_py.gateway.cluster.config import ClusterConfig, parse_urls

    if urls is None and name is None:
        return config
    have = config.cluster
    if urls is None and have is None:
        raise ConfigurationError("--cluster-name needs --cluster nats://... (or [cluster] nats)")
    nats = parse_urls(urls) if urls is not None else have.nats
    if have is None:
        cluster = ClusterConfig(nats=nats, name=name or "mantis")
    else:
        cluster = dataclasses.replace(have, nats=nats, name=name or have.name)
    return dataclasses.replace(config, cluster=cluster)


async def _watch_parent(pid: int, server: Any, scope: Any) -> None:
    """Stop the gateway when process ``pid`` (the parent that started it) is gone."""
    import trio

    while True:
        if os.getppid() != pid:  # re-parented: the parent died (any signal, SIGKILL included)
            await server.go_away(1.0)
            scope.cancel()
            return
        await trio.sleep(0.25)


def _remove(path: str | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (the exception itself when it is not a group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
