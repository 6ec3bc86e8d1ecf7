from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class DevicesConfig(AppConfig):
    name = "devices"

    def ready(self) -> None:
        from devices.models import ApiKey, App, WebhookEndpoint

        # A key or app changed anywhere in this process (admin, shell, API)
        # is not served from the API-key cache (devices.apikeys).
        post_save.connect(_forget_key, sender=ApiKey, dispatch_uid="kpns-key-saved")
        post_delete.connect(_forget_key, sender=ApiKey, dispatch_uid="kpns-key-gone")
        post_save.connect(_forget_keys, sender=App, dispatch_uid="kpns-app-saved")
        post_delete.connect(_forget_keys, sender=App, dispatch_uid="kpns-app-gone")
        # Likewise the webhook subscriptions receipts look up (devices.webhooks).
        for signal, uid in ((post_save, "saved"), (post_delete, "gone")):
            signal.connect(
                _forget_subscriptions,
                sender=WebhookEndpoint,
                dispatch_uid=f"kpns-endpoint-{uid}",
            )


def _forget_key(sender: Any, instance: Any, **kwargs: Any) -> None:
    from devices.integrations import apikeys

    apikeys.forget(instance)


def _forget_keys(sender: Any, **kwargs: Any) -> None:
    from devices.integrations import apikeys

    apikeys.forget_all()


def _forget_subscriptions(sender: Any, **kwargs: Any) -> None:
    from devices.integrations import webhooks

    webhooks.subscriptions_forget()
