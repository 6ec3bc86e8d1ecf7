"""The app's provider keys in the admin: a write-only form on the app's page.

A secret (FCM service account, APNs .p8 key, VAPID private key) is typed
once and never rendered again, not even back into a form that failed
validation: a page shows when it was set and its fingerprint
(``providerkeys.secret_summary``), with a field to replace it and a box to
clear it. AppAdmin (devices/admin.py) shows the inline and the
"Regenerate VAPID keys" action.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from devices.native import providerkeys
from devices.native.models import AppProviderConfig


class WriteOnlyTextarea(forms.Textarea):
    """Renders empty whatever it holds: a secret posted with a form that
    failed validation is not echoed into the page."""

    def format_value(self, value: Any) -> None:
        return None


class ProviderConfigForm(forms.ModelForm):
    # Not named after the model's fields: a ModelForm would fill those with
    # the stored secret as their initial value and write back what is posted.
    new_fcm_service_account = forms.CharField(
        label="FCM service account JSON",
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="Paste the JSON key to set or replace it; empty keeps it.",
    )
    clear_fcm_service_account = forms.BooleanField(
        label="Clear the FCM service account", required=False
    )
    new_apns_key = forms.CharField(
        label="APNs key (.p8)",
        required=False,
        strip=False,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text="Paste the .p8 file to set or replace it; empty keeps it.",
    )
    clear_apns_key = forms.BooleanField(label="Clear the APNs key", required=False)

    class Meta:
        model = AppProviderConfig
        fields = [
            "fcm_project_id",
            "apns_key_id",
            "apns_team_id",
            "apns_bundle_id",
            "apns_environment",
            "grace_seconds",
            "wake_mode",
        ]
        labels = {
            "fcm_project_id": "FCM project id",
            "apns_key_id": "APNs key id",
            "apns_team_id": "APNs team id",
            "apns_bundle_id": "APNs bundle id (topic)",
            "apns_environment": "APNs environment",
            "grace_seconds": "Socket grace (seconds)",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        checks = [
            ("new_fcm_service_account", providerkeys.fcm_service_account_parse),
            ("new_apns_key", providerkeys.apns_key_check),
        ]
        for name, check in checks:
            if cleaned.get(name, "").strip():
                self._checked(name, check, cleaned[name])
        for name, label in (("apns_key_id", "key id"), ("apns_team_id", "team id")):
            value = cleaned.get(name, "")
            self._checked(name, providerkeys.apns_id_check, value, label)
        has_key = cleaned.get("new_apns_key", "").strip() or (
            self.instance.apns_key and not cleaned.get("clear_apns_key")
        )
        if has_key:
            for name in ("apns_key_id", "apns_team_id", "apns_bundle_id"):
                if not cleaned.get(name) and name not in self.errors:
                    self.add_error(name, "Needed with an APNs key.")
        return cleaned

    def _checked(self, name: str, check: Any, *args: Any) -> None:
        try:
            check(*args)
        except ValidationError as exc:
            self.add_error(name, exc)

    def save(self, commit: bool = True) -> AppProviderConfig:
        config = super().save(commit=commit)
        providerkeys.provider_secrets_update(
            config=config,
            fcm_service_account=self.cleaned_data.get("new_fcm_service_account", ""),
            fcm_clear=self.cleaned_data.get("clear_fcm_service_account", False),
            apns_key=self.cleaned_data.get("new_apns_key", ""),
            apns_clear=self.cleaned_data.get("clear_apns_key", False),
        )
        return config


class ProviderConfigInline(admin.StackedInline):
    """On an existing app's page (a new app gets its row with its keys)."""

    model = AppProviderConfig
    form = ProviderConfigForm
    can_delete = False
    extra = 0
    max_num = 1
    verbose_name = verbose_name_plural = "Native push providers"
    readonly_fields = [
        "vapid_public_key",
        "vapid_private_key_status",
        "fcm_service_account_status",
        "apns_key_status",
    ]
    fieldsets = [
        (
            "Web Push (VAPID)",
            {
                "fields": ["vapid_public_key", "vapid_private_key_status"],
                "description": "Generated with the app. The action “Regenerate "
                "VAPID keys” on the apps list replaces them.",
            },
        ),
        (
            "FCM",
            {
                "fields": [
                    "fcm_project_id",
                    "fcm_service_account_status",
                    "new_fcm_service_account",
                    "clear_fcm_service_account",
                ]
            },
        ),
        (
            "APNs",
            {
                "fields": [
                    "apns_key_status",
                    "new_apns_key",
                    "clear_apns_key",
                    "apns_key_id",
                    "apns_team_id",
                    "apns_bundle_id",
                    "apns_environment",
                ]
            },
        ),
        ("Delivery policy", {"fields": ["grace_seconds", "wake_mode"]}),
    ]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="VAPID private key")
    def vapid_private_key_status(self, config: AppProviderConfig) -> str:
        return providerkeys.secret_summary(
            config.vapid_private_key, config.vapid_generated_at
        )

    @admin.display(description="FCM service account")
    def fcm_service_account_status(self, config: AppProviderConfig) -> str:
        return providerkeys.secret_summary(
            config.fcm_service_account, config.fcm_service_account_set_at
        )

    @admin.display(description="APNs key")
    def apns_key_status(self, config: AppProviderConfig) -> str:
        return providerkeys.secret_summary(config.apns_key, config.apns_key_set_at)
