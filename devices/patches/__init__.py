"""Every change KPNS makes to a library's internals, and the check before it.

Daphne, Twisted and autobahn (the socket server), psycopg-pool and
prometheus-client are changed in a few small places, each in the module
named after its library here, each with the reason and the figure behind it
(docs/architecture.md, "Patches"). Nothing is changed on import: `install()`
runs at process start (kpns_serve with `server=True`, every Django process
through devices.apps for the others) and first checks, for every patch, that
the library is a version the patch was read against and that each private
member it replaces or reads is still there with the same shape. On any
mismatch the process refuses to start, naming the library, the versions
and the member (docs/operations.md, "Start-up check of the patches").

KPNS_PATCHES=off runs without the optional patches (all of them
optimisations). The patches marked required (the drain's hooks and its 1012
close code) are checked and applied either way: without them a drain
cannot close sockets.
"""

import logging
import os

from devices.patches.guard import Patch, version_problem

logger = logging.getLogger(__name__)

_installed: set[str] = set()


class PatchMismatch(RuntimeError):
    """A library no longer matches what its patches were written for."""


def _patches(*, server: bool) -> list[Patch]:
    from devices.patches import prometheus_client, psycopg_pool

    chosen = [*psycopg_pool.PATCHES, *prometheus_client.PATCHES]
    if server:
        from devices.patches import autobahn, daphne, twisted

        chosen += [*daphne.PATCHES, *autobahn.PATCHES, *twisted.PATCHES]
    return chosen


def mode() -> str:
    value = os.environ.get("KPNS_PATCHES", "on").strip().lower() or "on"
    if value not in ("on", "off"):
        raise PatchMismatch(f"KPNS_PATCHES must be on or off, not {value!r}")
    return value


def problems(patches: list[Patch]) -> list[str]:
    """What stops these patches: wrong versions, changed members."""
    found = []
    for library in dict.fromkeys(patch.library for patch in patches):
        problem = version_problem(library)
        if problem:
            names = ", ".join(p.name for p in patches if p.library == library)
            found.append(f"{problem} (patches: {names})")
    for patch in patches:
        found += [
            f"{patch.library.distribution}: {p} ({patch.name})" for p in patch.check()
        ]
    return found


def install(*, server: bool) -> list[str]:
    """Check, then apply, the patches of this process; returns their names.

    server: the socket server's patches too (Daphne, Twisted, autobahn).
    Raises PatchMismatch, applying nothing, when a check fails.
    """
    wanted = _patches(server=server)
    optional_on = mode() == "on"
    chosen = [
        patch
        for patch in wanted
        if patch.name not in _installed and (patch.required or optional_on)
    ]
    found = problems(chosen)
    if found:
        required = sorted({p.name for p in chosen if p.required})
        raise PatchMismatch(
            "KPNS patches library internals that changed:\n  "
            + "\n  ".join(found)
            + "\nRe-read each patch (devices/patches/) against the installed "
            "version, then add it to the module's WRITTEN_FOR; or pin the "
            "version it was written for. KPNS_PATCHES=off starts without the "
            "optional patches; the required ones ("
            + ", ".join(required or ["none here"])
            + ") are checked either way."
        )
    for patch in chosen:
        patch.apply()
        _installed.add(patch.name)
    if not optional_on:
        skipped = [p.name for p in wanted if not p.required]
        logger.warning(
            "KPNS_PATCHES=off: running without %s", ", ".join(skipped) or "nothing"
        )
    return sorted(_installed)


def installed() -> list[str]:
    return sorted(_installed)
