"""`kpns push` against the REST API contract (POST /api/v1/pushes)."""

import json

import httpx
import pytest

from kpns_sdk import api, cli


def fake_server(answers):
    """An httpx transport recording requests and answering from `answers`."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers(request)
        return httpx.Response(status, json=body)

    return seen, httpx.MockTransport(handler)


@pytest.fixture
def transport(monkeypatch):
    holder = {}

    class Patched(httpx.AsyncClient):
        def __init__(self, *args, **kwargs):
            kwargs["transport"] = holder["transport"]
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(cli.httpx, "AsyncClient", Patched)
    return holder


def test_push_sends_the_contract_body_with_the_api_key(transport, capsys):
    seen, transport["transport"] = fake_server(
        lambda r: (202, {"message_id": "m-1", "targets": 3})
    )
    code = cli.main(
        [
            "push", "--server", "http://kpns.test", "--api-key", "sk_live",
            "--tag", "vip", "--tag", "beta", "--title", "Sale", "--body", "20% off",
            "--data", '{"coupon": "VIP20"}', "--ttl", "600", "--priority", "high",
        ]
    )  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out == "accepted: message m-1 for 3 device(s)\n"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://kpns.test/api/v1/pushes"
    assert request.headers["Authorization"] == "Bearer sk_live"
    assert json.loads(request.content) == {
        "tags": ["vip", "beta"],
        "title": "Sale",
        "body": "20% off",
        "data": {"coupon": "VIP20"},
        "ttl_seconds": 600,
        "priority": "high",
    }


def test_push_reports_refusals_in_plain_words(transport, capsys):
    problem = {
        "type": "about:blank",
        "title": "Invalid request",
        "status": 400,
        "detail": "See errors.",
        "errors": {"title": ["This field may not be blank."]},
    }
    _seen, transport["transport"] = fake_server(lambda r: (400, problem))
    code = cli.main(["push", "--api-key", "k", "--alias", "u1", "--title", " "])
    assert code == 1
    assert capsys.readouterr().err == (
        "kpns: refused: HTTP 400: title: This field may not be blank.\n"
    )
    _seen, transport["transport"] = fake_server(
        lambda r: (401, {"title": "Unauthorized", "detail": "Invalid API key."})
    )
    assert cli.main(["push", "--api-key", "k", "--alias", "u", "--title", "t"]) == 1
    assert "refused: HTTP 401: Invalid API key." in capsys.readouterr().err


def test_push_usage_errors(capsys):
    assert cli.main(["push", "--alias", "u", "--title", "t", "--api-key", ""]) == 2
    assert "give --api-key" in capsys.readouterr().err
    assert (
        cli.main(
            ["push", "--api-key", "k", "--alias", "u", "--title", "t", "--data", "[1]"]
        )
        == 2
    )
    assert "--data must be a JSON object" in capsys.readouterr().err
    with pytest.raises(ValueError):
        api.send_push(None, "s", "k", title="t", aliases=["a"], tags=["b"]).send(None)


def test_status_reads_readiness_in_plain_words(transport, capsys, tmp_path):
    not_ready = {
        "type": "about:blank",
        "title": "Service unavailable",
        "status": 503,
        "detail": "Not ready: channel_layer, migrations.",
        "checks": {
            "database": {"ok": True, "backend": "postgresql", "ms": 1.2},
            "channel_layer": {"ok": False, "backend": "X", "error": "TimeoutError"},
            "migrations": {"ok": False, "unapplied": 2, "next": ["a.1", "a.2"]},
        },
    }
    seen, transport["transport"] = fake_server(lambda r: (503, not_ready))
    state = str(tmp_path / "device.json")
    code = cli.main(["status", "--server", "http://kpns.test", "--state", state])
    assert code == 1
    assert [str(r.url) for r in seen] == ["http://kpns.test/readyz"]
    assert capsys.readouterr().out.splitlines()[0] == (
        "server http://kpns.test: not ready: database ok (postgresql, 1.2 ms); "
        "channel layer FAILING (TimeoutError); migrations FAILING (2 not applied)"
    )
