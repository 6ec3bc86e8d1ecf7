"""Roles: the Marketer group manages campaigns and saved segments and views
devices and stats, but not apps, API keys or users."""

from typing import Any

from django.db.models import Q

MARKETER = "Marketer"
MARKETER_PERMISSIONS = [
    ("campaigns", "add_campaign"),
    ("campaigns", "change_campaign"),
    ("campaigns", "delete_campaign"),
    ("campaigns", "view_campaign"),
    ("campaigns", "add_messagetemplate"),
    ("campaigns", "change_messagetemplate"),
    ("campaigns", "delete_messagetemplate"),
    ("campaigns", "view_messagetemplate"),
    ("devices", "add_segment"),
    ("devices", "change_segment"),
    ("devices", "delete_segment"),
    ("devices", "view_segment"),
    ("devices", "view_device"),
    ("devices", "view_message"),
    ("devices", "view_delivery"),
]
# Every role (a Group) the project defines: the access matrix
# (tests/security/access_matrix.csv) has a column for each.
ROLES = {MARKETER: MARKETER_PERMISSIONS}


def marketer_group_sync(group_model: Any, permission_model: Any) -> Any:
    """Create or repair the Marketer group (models passed in for migrations)."""
    group, _ = group_model.objects.get_or_create(name=MARKETER)
    # Permissions of models a later migration creates do not exist yet when
    # an earlier one runs: each migration that adds a model the role needs
    # syncs the group again.
    wanted = Q()
    for app_label, codename in MARKETER_PERMISSIONS:
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    group.permissions.set(permission_model.objects.filter(wanted))
    return group


def marketer_group() -> Any:
    from django.contrib.auth.models import Group, Permission

    return marketer_group_sync(Group, Permission)
