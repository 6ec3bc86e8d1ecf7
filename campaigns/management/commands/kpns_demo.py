"""Create the demo app and an admin login, once; print how to use them."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from campaigns.roles import marketer_group
from devices.models import App
from devices.registry import services as registry

DEMO_APP = "Demo app"


class Command(BaseCommand):
    help = "Ensure a demo app and an admin user exist, and print the login."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        app = App.objects.filter(name=DEMO_APP).first() or registry.app_create(
            name=DEMO_APP
        )
        marketer_group()
        users = get_user_model().objects
        if not users.filter(username=options["username"]).exists():
            users.create_superuser(options["username"], "", options["password"])
            login = f"{options['username']} / {options['password']}"
        else:
            login = f"{options['username']} (existing user, password unchanged)"
        self.stdout.write(f"Demo app: {app.name}  client key: {app.client_key}")
        self.stdout.write(f"Admin login: {login}")
