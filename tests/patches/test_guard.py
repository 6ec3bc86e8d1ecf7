"""The start-up check of the patches (devices/patches): a library at a
version the patches were not read against, or a private member gone or
reshaped, stops the process before anything is replaced."""

import autobahn.websocket.protocol as autobahn_protocol
import pytest
from daphne.http_protocol import WebRequest
from daphne.ws_protocol import WebSocketProtocol
from django.core.management import CommandError, call_command

from devices import patches
from devices.patches import guard


@pytest.fixture
def fresh(monkeypatch):
    """Nothing installed yet, and every server patch target restored after."""
    monkeypatch.setattr(patches, "_installed", set())
    for owner, name in [
        (WebSocketProtocol, "serverClose"),
        (WebSocketProtocol, "onOpen"),
        (WebSocketProtocol, "onMessageEnd"),
        (WebRequest, "process"),
    ]:
        monkeypatch.setattr(owner, name, owner.__dict__.get(name, getattr(owner, name)))
    monkeypatch.delenv("KPNS_PATCHES", raising=False)
    return monkeypatch


def fake_version(monkeypatch, distribution: str, found: str) -> None:
    real = guard.metadata.version

    def version(name: str) -> str:
        return found if name == distribution else real(name)

    monkeypatch.setattr(guard.metadata, "version", version)


def test_the_installed_libraries_pass_every_check():
    """Fails when a library is upgraded: re-read its patches, then add the
    version to the module's WRITTEN_FOR."""
    assert patches.problems(patches._patches(server=True)) == []


def test_a_version_mismatch_refuses_and_changes_nothing(fresh):
    fake_version(fresh, "daphne", "4.3.0")
    before = WebSocketProtocol.serverClose
    with pytest.raises(patches.PatchMismatch) as refused:
        patches.install(server=True)
    message = str(refused.value)
    assert "daphne: written for 4.2.3, found 4.3.0" in message
    assert "daphne-server-close-codes" in message
    assert WebSocketProtocol.serverClose is before
    assert patches.installed() == []


def test_a_missing_member_refuses_naming_it(fresh):
    fresh.delattr(autobahn_protocol, "pformat")
    with pytest.raises(patches.PatchMismatch) as refused:
        patches.install(server=True)
    assert "autobahn.websocket.protocol.pformat is missing" in str(refused.value)
    assert "autobahn-unstyled-debug-args" in str(refused.value)


def test_a_reshaped_method_refuses_with_both_signatures(fresh):
    fresh.setattr(WebRequest, "process", lambda self, channel: None)
    with pytest.raises(patches.PatchMismatch) as refused:
        patches.install(server=True)
    assert (
        "daphne.http_protocol.WebRequest.process takes ('channel',), expected ()"
        in str(refused.value)
    )


def test_off_starts_without_the_optional_patches(fresh):
    fresh.setenv("KPNS_PATCHES", "off")
    fresh.delattr(autobahn_protocol, "pformat")  # an optional patch's target
    fake_version(fresh, "twisted", "99.0.0")  # a library with optional ones only
    installed = patches.install(server=True)
    assert installed == ["daphne-drain", "daphne-server-close-codes"]
    assert WebSocketProtocol.serverClose.__module__ == "devices.patches.daphne"
    assert WebSocketProtocol.onOpen.__module__ == "daphne.ws_protocol"


def test_off_still_refuses_when_a_required_patch_cannot_apply(fresh):
    fresh.setenv("KPNS_PATCHES", "off")
    fresh.setattr(WebSocketProtocol, "serverClose", lambda self: None)
    with pytest.raises(patches.PatchMismatch) as refused:
        patches.install(server=True)
    message = str(refused.value)
    assert "WebSocketProtocol.serverClose takes (), expected ('code',)" in message
    assert "checked either way" in message


def test_kpns_patches_accepts_only_on_or_off(fresh):
    fresh.setenv("KPNS_PATCHES", "maybe")
    with pytest.raises(patches.PatchMismatch, match="on or off"):
        patches.install(server=False)


def test_kpns_serve_refuses_to_start_on_a_mismatch(fresh):
    fake_version(fresh, "twisted", "27.1.0")
    with pytest.raises(CommandError) as refused:
        call_command("kpns_serve", "--port", "0")
    assert "twisted: written for 26.10.0, found 27.1.0" in str(refused.value)
    assert "twisted-eager-tcp-write" in str(refused.value)
