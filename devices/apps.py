from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "devices"

    def ready(self) -> None:
        from kpns_site import checks  # noqa: F401  (registers the deploy checks)
