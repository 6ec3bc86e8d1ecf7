"""KPNS Python SDK: an asyncio device client and the `kpns` command line.

Guide: docs/clients.md. The wire format comes from devices/protocol.py
(re-exported by kpns_sdk.protocol), the same code the server runs.
"""

from kpns_sdk.api import ApiError
from kpns_sdk.client import Client, FileStore, MemoryStore, StateChange
from kpns_sdk.protocol import Push, Resync

__all__ = [
    "ApiError",
    "Client",
    "FileStore",
    "MemoryStore",
    "Push",
    "Resync",
    "StateChange",
]
__version__ = "1.0.0"
