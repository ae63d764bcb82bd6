"""`mantis-py gateway [--host H] [--port P] [--config gateway.toml]`: run a gateway (SYSTEM.md §3.2).

Bad flags or a bad config file print one line and exit 2; a port in use exits 1; Ctrl-C and
SIGTERM stop the gateway cleanly (exit 0). See docs/operations.md.
"""

from __future__ import annotations

import argparse
import logging
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
        config = _with_cluster(config, args.cluster, args.cluster_name)
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
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(main)
    except OSError as exc:
        print(f"mantis-py gateway: cannot listen on {config.host}:{config.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    except ConfigurationError as exc:
        print(f"mantis-py gateway: {exc}", file=sys.stderr)
        return 2
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
