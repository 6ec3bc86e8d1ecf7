"""Every channel-layer name KPNS uses is built here, nowhere else."""

import os
import re
import secrets
import socket

_UNSAFE = re.compile(r"[^a-zA-Z0-9\-_.]")


def new_node_name() -> str:
    """A name unique to this server process (host, pid, random suffix)."""
    host = _UNSAFE.sub("-", socket.gethostname())[:32]
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


def node_channel(node_name: str) -> str:
    """The one channel a server process receives on (docs/architecture.md)."""
    return f"kpns.node.{node_name}"
