"""The start-up check of every patch: the library's version, then each
private member a patch replaces or reads, before anything is replaced."""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any


@dataclass(frozen=True)
class Library:
    """A distribution and the versions its patches were read against."""

    distribution: str
    written_for: frozenset[str]


def version_problem(library: Library) -> str | None:
    try:
        found = metadata.version(library.distribution)
    except metadata.PackageNotFoundError:
        found = "not installed"
    if found in library.written_for:
        return None
    expected = ", ".join(sorted(library.written_for))
    return f"{library.distribution}: written for {expected}, found {found}"


def member_problem(
    owner: Any, name: str, params: tuple[str, ...] | None = None
) -> str | None:
    """`owner.name` is missing, or is not a callable taking exactly `params`
    (after self, for a method)."""
    if inspect.ismodule(owner):
        where = owner.__name__
    else:
        where = f"{owner.__module__}.{owner.__qualname__}"
    if not hasattr(owner, name):
        return f"{where}.{name} is missing"
    if params is None:
        return None
    member = getattr(owner, name)
    try:
        found = tuple(inspect.signature(member).parameters)
    except (TypeError, ValueError):
        return f"{where}.{name} is not a callable with a signature"
    if inspect.isclass(owner) and found[:1] == ("self",):
        found = found[1:]
    if found != params:
        return f"{where}.{name} takes {found}, expected {params}"
    return None


def members(owner: Any, expected: dict[str, tuple[str, ...] | None]) -> list[str]:
    found = (member_problem(owner, name, params) for name, params in expected.items())
    return [problem for problem in found if problem]


@dataclass(frozen=True)
class Patch:
    """One change to a library, applied by install() once `check` finds
    nothing wrong. A required patch is applied even with KPNS_PATCHES=off."""

    name: str
    library: Library
    check: Callable[[], list[str]]
    apply: Callable[[], None]
    required: bool = False
