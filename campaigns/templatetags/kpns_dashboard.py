from typing import Any

from django import template

from campaigns.selectors import dashboard_stats

register = template.Library()


@register.inclusion_tag("admin/kpns_dashboard.html")
def kpns_dashboard() -> dict[str, Any]:
    return {"dashboard": dashboard_stats()}
