"""The Marketer group: manage campaigns, view devices and stats; nothing else."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from campaigns.roles import marketer_group_sync


def create_marketer_group(apps, schema_editor):
    # Permissions are normally made after all migrations; make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    marketer_group_sync(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission")
    )


def remove_marketer_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Marketer").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
        ("devices", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_marketer_group, remove_marketer_group)]
