"""The Marketer group manages saved segments too (campaigns/roles.py)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from campaigns.roles import marketer_group_sync


def sync_marketer_group(apps, schema_editor):
    # Permissions are normally made after all migrations; make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    marketer_group_sync(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0007_campaign_segment"),
        ("devices", "0006_segments_version_key"),
    ]

    operations = [migrations.RunPython(sync_marketer_group, migrations.RunPython.noop)]
