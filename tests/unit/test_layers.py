"""Dependencies point one way (docs/architecture.md, "The map").

Every module of the project belongs to a layer; a module may import its own
layer and the layers below it, never one above. Production code never
imports the benchmark or the tests, and no two packages import each other.
Imports inside `if TYPE_CHECKING:` blocks are annotations only and are not
counted.
"""

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("devices", "campaigns", "kpns_site", "kpns_sdk")

# Lowest first. A module belongs to the first prefix that matches it.
LAYERS: list[tuple[str, ...]] = [
    (
        "devices",
        "devices.models",
        "devices.conf",
        "devices.migrations",
        "devices.native.models",
        "devices.native.crypto",
        "devices.native.migrations",
    ),
    # Pure helpers: the wire format, token hashing, library patches.
    ("devices.delivery.protocol", "devices.registry.tokens", "devices.patches"),
    ("devices.integrations",),
    ("devices.registry",),
    ("devices.delivery", "devices.native"),
    ("devices.server",),
    (
        "devices.api",
        "devices.admin",
        "devices.recall_admin",
        "devices.apps",
        "devices.management",
        "devices.native.api",
        "devices.native.admin",
        "devices.native.serializers",
        "devices.native.urls",
    ),
    ("campaigns",),
    ("kpns_site",),
    # The SDK reads the wire format only (kpns_sdk/protocol.py).
    ("kpns_sdk",),
]


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    """Absolute imports outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for top in PRODUCTION
        for path in (ROOT / top).rglob("*.py")
        if "migrations" not in path.parts or top == "devices"
    }


MODULES = project_modules()


def test_every_production_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_layers(module):
    mine = layer_of(module)
    upward = []
    for name in imports_of(MODULES[module]):
        top = name.split(".")[0]
        assert top not in ("bench", "tests"), f"{module} imports {name}"
        if top not in PRODUCTION:
            continue
        theirs = layer_of(name)
        if theirs is not None and mine is not None and theirs > mine:
            upward.append(name)
    assert not upward, f"{module} (layer {mine}) imports upward: {upward}"


def unit_of(module: str) -> str | None:
    """The layer prefix a module belongs to: a package or a module."""
    matches = [
        prefix
        for prefixes in LAYERS
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches, key=len) if matches else None


def test_no_two_packages_import_each_other():
    """Within a layer (imports across layers only point down)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        mine = unit_of(module)
        for name in imports_of(path):
            theirs = unit_of(name) if name.split(".")[0] in PRODUCTION else None
            if mine and theirs and theirs != mine:
                edges[mine].add(theirs)
    cycles = sorted(
        (a, b) for a, targets in edges.items() for b in targets if a in edges.get(b, ())
    )
    assert cycles == [], cycles


def test_the_checker_sees_an_upward_import(tmp_path):
    """The check is not vacuous: a registry module importing the delivery
    core is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from devices.delivery import wakeups\n")
    assert layer_of("devices.delivery.wakeups") > layer_of("devices.registry.services")
    assert "devices.delivery.wakeups" in imports_of(bad)
