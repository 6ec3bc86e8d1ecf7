"""Native push tunables: rows of the one typed settings table
(devices/conf.py), each settable as ``KPNS_<NAME>`` and documented in
docs/operations.md and docs/native-push.md."""

from typing import Any

from devices.conf import kpns_setting


def native_setting(name: str) -> Any:
    return kpns_setting(name)
