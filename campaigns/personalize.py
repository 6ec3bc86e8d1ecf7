"""Per-device content of a campaign: placeholders filled from the device.

The contract between the campaign sender and the template engine:

    render(fields, device) -> fields

`fields` holds a message's content (title, body, url, image, data) after
the variant and language were chosen; the result is what this device is
sent. It must be pure (same input, same output) so that the sender can
group devices whose rendered content is equal into one message, and it
must never raise for a device's values: a missing value takes the
placeholder's default.

This first version returns the fields unchanged.
"""

from typing import Any

from devices.models import Device

CONTENT_FIELDS = ("title", "body", "url", "image", "data")


def render(fields: dict[str, Any], device: Device) -> dict[str, Any]:
    """The content `device` is sent for these campaign fields."""
    return dict(fields)
