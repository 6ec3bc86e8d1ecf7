"""The placeholder engine: grammar, filters, hostile templates, sizes."""

import pytest
from django.core.exceptions import ValidationError

from campaigns import personalize, placeholders
from campaigns.placeholders import PlaceholderError
from devices.models import Device

HI = 'Hi {{ first_name|default:"there" }}'


def device(**fields):
    fields.setdefault("platform", "android")
    return Device(**fields)


def rendered(text, **device_fields):
    return personalize.render({"title": text}, device(**device_fields))["title"]


def test_a_placeholder_is_filled_from_the_devices_attributes():
    assert rendered(HI, attributes={"first_name": "Amélie"}) == "Hi Amélie"


def test_a_missing_or_blank_value_takes_the_default():
    assert rendered(HI, attributes={}) == "Hi there"
    assert rendered(HI, attributes={"first_name": "  "}) == "Hi there"
    assert rendered("Hi {{ first_name }}!", attributes={}) == "Hi !"


def test_device_fields_are_placeholders_and_win_over_attributes():
    text = "{{ alias }} {{ locale }} {{ platform }} {{ app_version }} {{ timezone }}"
    out = rendered(
        text,
        alias="u-1",
        locale="fr-FR",
        app_version="2.1",
        timezone="Europe/Paris",
        attributes={"alias": "spoofed"},
    )
    assert out == "u-1 fr-FR android 2.1 Europe/Paris"


def test_numbers_and_booleans_render_as_text_lists_and_objects_do_not():
    text = '{{ n }} {{ b }} {{ f }} {{ l|default:"-" }} {{ o|default:"-" }}'
    out = rendered(text, attributes={"n": 3, "b": True, "f": 1.5, "l": [1], "o": {}})
    assert out == "3 true 1.5 - -"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ name|upper }}", "ÉLODIE DE LA TOUR"),
        ("{{ name|lower }}", "élodie de la tour"),
        ("{{ name|title }}", "Élodie De La Tour"),
        ("{{ name|lower|capfirst }}", "Élodie de la tour"),
        ("{{ name|truncate:6 }}", "élodi…"),
        ("{{ name|truncate:100 }}", "élodie de la tour"),
        ('{{ missing|default:"ami"|upper }}', "AMI"),
        ("{{ name|default:'x|y' }}", "élodie de la tour"),
    ],
)
def test_filters(text, expected):
    assert rendered(text, attributes={"name": "élodie de la tour"}) == expected


def test_data_string_values_are_rendered_at_any_depth_and_keys_are_not():
    fields = {
        "title": "t",
        "data": {"{{ k }}": "{{ alias }}", "n": [1, {"deep": "x{{ alias }}"}], "i": 7},
    }
    out = personalize.render(fields, device(alias="u7"))
    assert out["data"] == {"{{ k }}": "u7", "n": [1, {"deep": "xu7"}], "i": 7}


def test_url_and_image_are_sent_as_written():
    fields = {"title": "{{ alias }}", "url": "https://x.example/{{alias}}", "image": ""}
    out = personalize.render(fields, device(alias="u7"))
    assert out["url"] == "https://x.example/{{alias}}"
    assert out["title"] == "u7"


def test_render_is_pure_and_does_not_change_its_input():
    fields = {"title": HI, "data": {"a": "{{ alias }}"}}
    one = device(alias="a", attributes={"first_name": "Zoé"})
    first = personalize.render(fields, one)
    assert personalize.render(fields, one) == first
    assert fields == {"title": HI, "data": {"a": "{{ alias }}"}}


def test_content_without_placeholders_is_returned_as_a_copy():
    fields = {"title": "Sale", "body": "50% off"}
    out = personalize.render(fields, device())
    assert out == fields and out is not fields


# Hostile templates and values ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{ device.alias }}", "'device.alias' is not a name"),
        ("{{ first_name.__class__ }}", "is not a name"),
        ("{{ attributes['x'] }}", "is not a name"),
        ("{{ alias() }}", "is not a name"),
        ("{{ alias|upper() }}", "is not a filter"),
        ("{{ 7*7 }}", "is not a name"),
        ("{% for x in y %}{{ x }}{% endfor %}", "'{%' at character 1"),
        ("{% load static %}", "template tags and comments are not supported"),
        ("{# note #}", "'{#' at character 1"),
        ("{{ alias|safe }}", "unknown filter 'safe'"),
        ("{{ alias|truncate:999999999 }}", "from 1 to 1000"),
        ("{{ alias|truncate:-1 }}", "from 1 to 1000"),
        ("{{ alias|default:there }}", 'write name or name:"text"'),
        ('{{ alias|upper:"x" }}', "upper takes no argument"),
        ("Hi {{ first_name", "{{ at character 4 is never closed"),
        ("{{ {{ alias }} }}", "cannot contain another"),
        ("{{ }}", "a name is missing"),
        ("{{ a|upper|upper|upper|upper|upper|upper }}", "at most 5 filters"),
        ("{{ a }}" * 21, "At most 20 placeholders"),
    ],
)
def test_hostile_or_broken_templates_are_refused_with_the_place(text, says):
    with pytest.raises(PlaceholderError, match=None) as caught:
        placeholders.parse(text)
    assert says in str(caught.value)


def test_settings_and_other_objects_are_just_unknown_names():
    """{{ settings }} or {{ SECRET_KEY }} name nothing the device has."""
    text = "{{ settings }}{{ SECRET_KEY }}{{ request }}{{ token_hash }}{{ app }}"
    one = device(alias="a", attributes={}, token_hash="secret-hash")
    assert rendered(text, alias="a", attributes={}, token_hash="secret-hash") == ""
    assert "secret-hash" not in str(personalize.render({"title": text}, one))


def test_a_value_holding_a_placeholder_is_sent_literally_not_rendered_again():
    out = rendered("Hi {{ name }}", alias="u-9", attributes={"name": "{{ alias }}"})
    assert out == "Hi {{ alias }}"


def test_control_characters_in_values_become_spaces():
    out = rendered("{{ name }}", attributes={"name": "a\nb\x00c\x1b[31m\ud800"})
    assert out == "a b c [31m "


def test_a_huge_value_renders_at_most_the_placeholders_cap():
    huge = "x" * 4000
    assert len(rendered("{{ v }}", attributes={"v": huge})) == 100
    assert rendered("{{ v|truncate:10 }}", attributes={"v": huge}) == "x" * 9 + "…"
    # upper can lengthen a text ("ß" -> "SS"); the cap still holds.
    assert len(rendered("{{ v|upper }}", attributes={"v": "ß" * 4000})) == 100


def test_save_time_check_names_the_field_and_the_placeholder():
    with pytest.raises(ValidationError) as caught:
        personalize.content_validate(
            {"title": "{{ a|foo }}", "body": "ok", "data": {"k": "{{ b.c }}"}}
        )
    errors = caught.value.message_dict
    assert errors["title"] == [
        "{{ a|foo }} at character 1: unknown filter 'foo'; the filters are "
        "capfirst, default, lower, title, truncate, upper."
    ]
    assert errors["data"][0].startswith("data.k: {{ b.c }} at character 1:")


# Size ------------------------------------------------------------------------


def test_content_whose_worst_case_exceeds_the_payload_limit_is_refused():
    fields = {"title": "t", "body": "{{ a }} " * 11}
    with pytest.raises(ValidationError) as caught:
        personalize.content_validate(fields)
    (message,) = caught.value.message_dict["body"]
    assert "this push would be" in message and "the limit is 4096" in message


def test_truncate_makes_the_same_content_fit():
    personalize.content_validate({"title": "t", "body": "{{ a|truncate:20 }} " * 11})


def test_rendered_pushes_fit_the_limit_even_with_huge_values():
    """Every placeholder at its cap with the widest characters fits, as
    the save-time check promised."""
    fields = {"title": "{{ a }}", "body": "{{ a }} {{ b }}", "data": {"k": "{{ b }}"}}
    personalize.content_validate(fields)
    values = {"a": "😀" * 4000, "b": '"\\' * 2000}
    out = personalize.render(fields, device(attributes=values))
    assert personalize.push_bytes(out) <= 4096
    assert out["title"] == "😀" * 99 + "…"


def test_a_lowered_limit_shortens_values_then_text_deterministically(settings):
    fields = {"title": "Hello {{ a|truncate:1000 }}", "body": "B" * 300 + "{{ a }}"}
    one = device(attributes={"a": "é" * 3000})
    settings.KPNS = {**settings.KPNS, "MAX_PAYLOAD_BYTES": 600}
    out = personalize.render(fields, one)
    assert personalize.push_bytes(out) <= 600
    assert out == personalize.render(fields, one)  # the same cut every time
    assert out["title"].startswith("Hello é")
    settings.KPNS = {**settings.KPNS, "MAX_PAYLOAD_BYTES": 300}
    out = personalize.render(fields, one)
    assert personalize.push_bytes(out) <= 300
    assert out["body"].endswith("…") or out["body"] == ""


def test_a_rendered_title_never_exceeds_its_column():
    fields = {"title": "x" * 150 + "{{ a|truncate:1000 }}"}
    out = personalize.render(fields, device(attributes={"a": "y" * 1000}))
    assert len(out["title"]) == personalize.TITLE_MAX_CHARS


def test_text_saved_before_placeholders_existed_is_sent_as_written():
    fields = {"title": "Save {{ big", "body": "{% literally %}"}
    assert personalize.render(fields, device()) == fields
