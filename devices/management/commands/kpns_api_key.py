"""Create a server API key from the command line (the admin does the same)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from devices.integrations import apikeys
from devices.models import App


class Command(BaseCommand):
    help = "Create an API key for an app and print it (shown only this once)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--app", required=True, help="the app's name")
        parser.add_argument("--name", default="cli", help="a label for the key")
        parser.add_argument(
            "--scope",
            action="append",
            choices=apikeys.SCOPES,
            help="repeat for several; default: every scope",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        app = App.objects.filter(name=options["app"]).first()
        if app is None:
            raise CommandError(f"No app named {options['app']!r}.")
        try:
            created = apikeys.api_key_create(
                app=app,
                name=options["name"],
                scopes=options["scope"] or apikeys.SCOPES,
            )
        except ValidationError as exc:
            raise CommandError(str(exc.message_dict)) from exc
        self.stdout.write(created.key)
