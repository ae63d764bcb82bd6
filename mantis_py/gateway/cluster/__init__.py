"""A cluster of gateways joined by NATS (docs/cluster.md). ``config``, ``state`` and ``node`` are
pure; ``bridge`` (the NATS thread) and ``runner`` (the trio task) are the shells."""
