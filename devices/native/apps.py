from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_save


class NativeConfig(AppConfig):
    name = "devices.native"
    label = "native"
    verbose_name = "Native push"

    def ready(self) -> None:
        from devices.models import App

        # Every new app gets its VAPID key pair at creation, so the JS SDK
        # can subscribe before anyone configures anything.
        post_save.connect(_app_created, sender=App, dispatch_uid="kpns-native-app")


def _app_created(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if created and not kwargs.get("raw"):
        from devices.native import services

        services.provider_config_create(app=instance)
