"""Saved templates: content a campaign starts from, shared by the admin and
the API. A template is checked as a campaign's content is (payload size,
placeholders and their worst case, campaigns.personalize); a campaign
made from one copies its content, so editing the template later changes
no campaign."""

import copy
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import personalize
from campaigns.models import MessageTemplate
from devices.delivery import messages
from devices.models import App, Message

TEMPLATE_FIELDS = ("name", *personalize.CONTENT_FIELDS)


def template_validate(template: MessageTemplate) -> None:
    """Content and name, with a message per field."""
    errors: dict[str, list[str]] = {}
    if not template.name.strip():
        errors["name"] = ["A name is required."]
    elif (
        MessageTemplate.objects.filter(app_id=template.app_id, name=template.name)
        .exclude(pk=template.pk)
        .exists()
    ):
        errors["name"] = ["This app already has a template with this name."]
    message = Message(
        app_id=template.app_id,
        **personalize.content_of(template),
        created_at=timezone.now(),
        expires_at=timezone.now() + timedelta(days=1),
    )
    for check in (
        lambda: messages.message_validate(message),
        lambda: personalize.content_validate(personalize.content_of(template)),
    ):
        try:
            check()
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                errors.setdefault(field, []).extend(problems)
    if errors:
        raise ValidationError(errors)


def template_create(*, app: App, **fields: Any) -> MessageTemplate:
    template = MessageTemplate(app=app, **_known(fields))
    template_validate(template)
    template.save()
    return template


def template_update(*, template: MessageTemplate, **fields: Any) -> MessageTemplate:
    for name, value in _known(fields).items():
        setattr(template, name, value)
    template_validate(template)
    template.save()
    return template


def template_delete(*, template: MessageTemplate) -> None:
    """Campaigns made from it keep their copy of its content."""
    template.delete()


def template_content(template: MessageTemplate) -> dict[str, Any]:
    """The fields a campaign copies from the template."""
    content = personalize.content_of(template)
    content["data"] = copy.deepcopy(template.data or {})
    return content


def _known(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - set(TEMPLATE_FIELDS)
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    return fields
