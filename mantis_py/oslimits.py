"""Process limits a server needs raised before it can hold thousands of sockets."""

from __future__ import annotations

__all__ = ["raise_open_files"]


def raise_open_files(want: int) -> int:
    """Raise this process's soft limit of open files towards ``want`` (never above the hard
    limit, never lowered); return the soft limit in force afterwards (-1: unlimited or unknown).
    Linux often starts processes at 1,024, while a gateway holds a socket per agent and client."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < want:
            soft = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return -1 if soft == resource.RLIM_INFINITY else int(soft)
    except (ImportError, ValueError, OSError):
        return -1
