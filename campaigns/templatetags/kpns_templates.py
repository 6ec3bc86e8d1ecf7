from typing import Any

from django import template
from django.urls import reverse

from campaigns.models import MessageTemplate

register = template.Library()


@register.inclusion_tag("admin/campaigns/template_picker.html", takes_context=True)
def template_picker(context: dict[str, Any]) -> dict[str, Any]:
    """The saved templates a new campaign can start from."""
    request = context["request"]
    try:
        chosen = int(request.GET.get("template", ""))
    except ValueError:
        chosen = None
    templates = MessageTemplate.objects.select_related("app").order_by(
        "app__name", "name"
    )[:200]
    return {
        "templates": list(templates),
        "chosen": chosen,
        "add_url": reverse("admin:campaigns_campaign_add"),
    }
