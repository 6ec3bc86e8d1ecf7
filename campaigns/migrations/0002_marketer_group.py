"""The Marketer group: manage campaigns, view devices and stats; nothing else."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MARKETER_PERMISSIONS = [
    ("campaigns", "add_campaign"),
    ("campaigns", "change_campaign"),
    ("campaigns", "delete_campaign"),
    ("campaigns", "view_campaign"),
    ("devices", "view_device"),
    ("devices", "view_message"),
    ("devices", "view_delivery"),
]


def create_marketer_group(apps, schema_editor):
    # Permissions are normally made after all migrations; make them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Marketer")
    for app_label, codename in MARKETER_PERMISSIONS:
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
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
