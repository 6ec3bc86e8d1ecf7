"""Saved templates, and the Marketer role may manage them."""

import django.db.models.deletion
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

from campaigns.roles import marketer_group_sync


def sync_marketer_group(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    marketer_group_sync(
        apps.get_model("auth", "Group"), apps.get_model("auth", "Permission")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0003_slice_online_pass"),
        ("devices", "0004_delivery_counters_retention"),
    ]

    operations = [
        migrations.CreateModel(
            name="MessageTemplate",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                ("title", models.CharField(max_length=200)),
                ("body", models.TextField(blank=True)),
                ("url", models.URLField(blank=True, max_length=1000)),
                (
                    "image",
                    models.URLField(
                        blank=True, max_length=1000, verbose_name="image URL"
                    ),
                ),
                ("data", models.JSONField(blank=True, default=dict)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "app",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="templates",
                        to="devices.app",
                    ),
                ),
            ],
            options={
                "verbose_name": "template",
                "ordering": ["name"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("app", "name"), name="uniq_template_name"
                    )
                ],
            },
        ),
        migrations.RunPython(sync_marketer_group, migrations.RunPython.noop),
    ]
