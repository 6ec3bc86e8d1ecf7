"""One typed table of settings (devices/conf.py), each settable from the
environment under its documented name."""

from pathlib import Path

import pytest

from devices.conf import DEFAULTS, from_environment

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_setting_is_documented_under_its_environment_name():
    docs = OPERATIONS.read_text()
    assert [name for name in DEFAULTS if f"`KPNS_{name}`" not in docs] == []


def test_defaults_apply_when_the_environment_is_silent():
    assert from_environment({}) == DEFAULTS


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("SWEEP_SECONDS", "0.5", 0.5),
        ("MAX_UNACKED", "40", 40),
        (
            "ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
            [
                "https://a.example",
                "https://b.example",
            ],
        ),
        ("GC_THRESHOLDS", "1000,5,10", [1000, 5, 10]),
        ("WEBHOOK_ALLOWED_NETWORKS", "", []),
    ],
)
def test_each_value_is_read_as_its_defaults_type(name, text, value):
    assert from_environment({f"KPNS_{name}": text})[name] == value


def test_a_value_that_does_not_parse_names_the_variable():
    with pytest.raises(ValueError, match="KPNS_MAX_UNACKED='lots'"):
        from_environment({"KPNS_MAX_UNACKED": "lots"})


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("NATIVE_CONCURRENCY", "8", 8),
        ("NATIVE_BREAKER_COOLDOWN_SECONDS", "2.5", 2.5),
        ("NATIVE_FALLBACK", "off", False),
        ("WEBPUSH_HOSTS", ".push.example, push.local", [".push.example", "push.local"]),
        ("FCM_BASE_URL", "http://127.0.0.1:9", "http://127.0.0.1:9"),
    ],
)
def test_native_push_settings_are_rows_of_the_table(name, text, value):
    assert from_environment({f"KPNS_{name}": text})[name] == value
