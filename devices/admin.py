"""The devices side of the marketers' admin: apps, devices, messages, nodes.

Every admin action declares its permission (tests/admin/test_admin_actions.py
enforces it), destructive ones ask first (``asks_confirmation``), and every
admin URL and action is in tests/security/access_matrix.csv.
"""

import functools
from collections.abc import Callable
from datetime import time
from types import SimpleNamespace
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from devices import recall_admin
from devices.conf import kpns_setting
from devices.delivery import caps, pushes, quiethours, revocation
from devices.delivery.recall import control_counts
from devices.integrations import apikeys, webhooks
from devices.models import (
    ApiKey,
    App,
    Delivery,
    Device,
    DeviceTag,
    Message,
    Node,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from devices.native import providerkeys
from devices.native import services as native
from devices.native.admin import ProviderConfigInline
from devices.registry import services as registry

# How many names a confirmation page lists; the count is always exact.
CONFIRM_LIST_LIMIT = 100
Action = Callable[[Any, HttpRequest, QuerySet], HttpResponse | None]


class GuardedModelAdmin(admin.ModelAdmin):
    """Answers 403 to a posted action the user may not run.

    Django drops such an action with "No action selected", or ignores the
    POST when the user may run no action at all: a forged POST is refused
    here instead, so the access matrix sees it.
    """

    def changelist_view(
        self, request: HttpRequest, extra_context: Any = None
    ) -> HttpResponse:
        if request.method == "POST":
            allowed = self.get_actions(request)
            if any(n and n not in allowed for n in request.POST.getlist("action")):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)


def asks_confirmation(
    consequence: str, label: Callable[[Any], str] = str
) -> Callable[[Action], Action]:
    """Run the action only once its confirmation page is answered (``post=yes``),
    as Django's own "delete selected" does. Put it under ``@admin.action``.

    The page lists the count and the names (``label``) of what is selected,
    and posts back exactly what the changelist posted (the ids, or
    ``select_across`` with the filters kept in the URL).
    """

    def decorate(action: Action) -> Action:
        @functools.wraps(action)
        def confirmed(
            model_admin: Any, request: HttpRequest, queryset: QuerySet
        ) -> HttpResponse | None:
            if request.POST.get("post") == "yes":
                return action(model_admin, request, queryset)
            return _confirmation_page(
                model_admin, request, queryset, action.__name__, consequence, label
            )

        confirmed.asks_confirmation = True  # type: ignore[attr-defined]
        return confirmed

    return decorate


def _confirmation_page(
    model_admin: Any,
    request: HttpRequest,
    queryset: QuerySet,
    action: str,
    consequence: str,
    label: Callable[[Any], str],
) -> TemplateResponse:
    opts = model_admin.model._meta
    count = queryset.count()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": getattr(model_admin, action).short_description,
        "opts": opts,
        "media": model_admin.media,
        "action": action,
        "consequence": consequence,
        "count": count,
        "objects_name": opts.verbose_name if count == 1 else opts.verbose_name_plural,
        "objects": [label(obj) for obj in queryset[:CONFIRM_LIST_LIMIT]],
        "more": max(0, count - CONFIRM_LIST_LIMIT),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/kpns/action_confirmation.html", context)


PACING_FIELDS = [
    "frequency_cap_count",
    "frequency_cap_window_seconds",
    "quiet_hours_start",
    "quiet_hours_end",
]
PACING_HELP = (
    "Campaign pushes a device gets at most, and the hours of its own night in "
    "which they wait (or are skipped, as each campaign chooses). Campaigns may "
    "override both; API pushes are capped only when they ask to be."
)


class AppForm(forms.ModelForm):
    frequency_cap_window_seconds = forms.TypedChoiceField(
        label="Per",
        choices=caps.WINDOW_CHOICES,
        coerce=int,
        initial=86400,
        help_text="A rolling window: the pushes of the last 24 hours, for 1 day.",
    )

    class Meta:
        model = App
        fields = [
            "name",
            "default_timezone",
            "frequency_cap_count",
            "frequency_cap_window_seconds",
            "quiet_hours_start",
            "quiet_hours_end",
        ]
        widgets = {
            "quiet_hours_start": forms.TimeInput(attrs={"type": "time"}),
            "quiet_hours_end": forms.TimeInput(attrs={"type": "time"}),
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The instance gets the cleaned values only after clean().
        typed = SimpleNamespace(
            **{
                name: cleaned.get(name, getattr(self.instance, name))
                for name in PACING_FIELDS
            }
        )
        try:
            quiethours.app_pacing_check(typed)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                for error in errors:
                    self.add_error(field if field in self.fields else None, error)
        return cleaned


@admin.register(App)
class AppAdmin(GuardedModelAdmin):
    form = AppForm
    list_display = [
        "name",
        "client_key",
        "online",
        "default_timezone",
        "pacing",
        "created_at",
    ]
    readonly_fields = ["client_key", "created_at"]
    search_fields = ["name"]
    actions = ["regenerate_vapid_keys"]
    fieldsets = [
        (None, {"fields": ["name", "client_key", "default_timezone", "created_at"]}),
        (
            "Frequency cap and quiet hours",
            {
                "fields": [
                    "frequency_cap_count",
                    "frequency_cap_window_seconds",
                    "quiet_hours_start",
                    "quiet_hours_end",
                ],
                "description": PACING_HELP,
            },
        ),
    ]

    def get_form(
        self,
        request: HttpRequest,
        obj: App | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        window = obj and quiethours.quiet_hours_or_none(
            obj.quiet_hours_start, obj.quiet_hours_end
        )
        example = quiethours.quiet_hours_example(
            window or quiethours.QuietHours(time(22, 0), time(8, 0)),
            viewer=timezone.get_current_timezone(),
        )
        form.base_fields["quiet_hours_start"].help_text = (
            f"In each device's own time zone (a device without one: the app's "
            f"default zone). For example {example} Empty: no quiet hours."
        )
        return form

    def get_inlines(self, request: HttpRequest, obj: App | None) -> list[Any]:
        if obj is None:
            return []  # a new app gets its provider row and VAPID keys
        native.provider_config_of(app=obj)  # an app made before native push
        return [ProviderConfigInline]

    def save_model(
        self, request: HttpRequest, obj: App, form: Any, change: bool
    ) -> None:
        if not change:
            created = registry.app_create(
                name=obj.name, default_timezone=obj.default_timezone
            )
            obj.pk, obj.client_key = created.pk, created.client_key
            obj.created_at = created.created_at
        super().save_model(request, obj, form, change)

    @admin.display(description="cap and quiet hours")
    def pacing(self, app: App) -> str:
        cap = caps.app_cap(app)
        window = quiethours.quiet_hours_or_none(
            app.quiet_hours_start, app.quiet_hours_end
        )
        parts = [
            f"{cap.limit} per {caps.window_words(cap.window)}" if cap else "no cap",
            f"quiet {window}" if window else "no quiet hours",
        ]
        return "; ".join(parts)

    @admin.action(description="Regenerate VAPID keys", permissions=["change"])
    @asks_confirmation(
        "Each app gets a new Web Push key pair; its browser subscriptions, "
        "bound to the old public key, are deactivated until the JS SDK "
        "subscribes again."
    )
    def regenerate_vapid_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        dropped = sum(
            providerkeys.vapid_keys_regenerate(config=native.provider_config_of(app=a))
            for a in queryset
        )
        self.message_user(
            request,
            f"New VAPID keys for {queryset.count()} app(s); "
            f"{dropped} Web Push subscription(s) deactivated.",
            messages.WARNING,
        )

    @admin.display(description="online now")
    def online(self, app: App) -> int:
        # Presence, whichever process or machine holds the socket; one
        # COUNT over the (app, node) index per row shown.
        return Device.objects.filter(app=app, node__isnull=False).count()


class OnlineFilter(admin.SimpleListFilter):
    title = "online"
    parameter_name = "online"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Online"), ("no", "Offline")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(node__isnull=False)
        if self.value() == "no":
            return queryset.filter(node__isnull=True)
        return queryset


class TestPushForm(forms.Form):
    title = forms.CharField(max_length=200, initial="Test push from KPNS")
    body = forms.CharField(max_length=1000, required=False, widget=forms.Textarea)


class TagFilter(admin.SimpleListFilter):
    """The most common tags, to see who a campaign's tag would reach."""

    title = "tag"
    parameter_name = "tag"
    LIMIT = 30

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        common = (
            DeviceTag.objects.values("name")
            .annotate(n=Count("pk"))
            .order_by("-n", "name")[: self.LIMIT]
        )
        return [(row["name"], f"{row['name']} ({row['n']})") for row in common]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(tags__name=self.value())
        return queryset


@admin.register(Device)
class DeviceAdmin(GuardedModelAdmin):
    # At 1366 px: a short id (the full one is on the device's page and in
    # the search), no column wider than its content.
    list_display = [
        "short_id",
        "app",
        "platform",
        "alias",
        "tag_list",
        "is_online",
        "last_seen_at",
        "is_active",
    ]
    list_display_links = ["short_id"]
    list_filter = [OnlineFilter, TagFilter, "app", "platform", "is_active"]
    search_fields = ["=id", "alias", "token_prefix"]
    readonly_fields = [
        "id",
        "token_prefix",
        "node",
        "connection_id",
        "last_seq",
        "acked_seq",
        "created_at",
        "last_seen_at",
        "revoked_at",
        "tag_list",
    ]
    actions = ["send_test_push", "revoke"]
    list_select_related = ["app"]
    show_full_result_count = False

    @admin.display(boolean=True, description="online")
    def is_online(self, device: Device) -> bool:
        return device.online

    def get_queryset(self, request: HttpRequest) -> QuerySet[Device]:
        return super().get_queryset(request).prefetch_related("tags")

    @admin.display(description="id", ordering="id")
    def short_id(self, device: Device) -> str:
        return format_html('<span title="{}">{}…</span>', device.pk, str(device.pk)[:8])

    @admin.display(description="tags")
    def tag_list(self, device: Device) -> str:
        names = sorted(tag.name for tag in device.tags.all())
        shown = ", ".join(names[:4])
        return shown + (f" +{len(names) - 4}" if len(names) > 4 else "")

    def has_push_permission(self, request: HttpRequest) -> bool:
        # A test push creates a Message: it takes the right to add messages,
        # which the Marketer role (view-only on devices) does not have.
        return request.user.has_perm("devices.add_message")

    @admin.action(
        description="Send test push to selected devices", permissions=["push"]
    )
    def send_test_push(
        self, request: HttpRequest, queryset: QuerySet[Device]
    ) -> HttpResponse | None:
        form = TestPushForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            count = pushes.push_test(
                devices=queryset.select_related("app"), **form.cleaned_data
            )
            self.message_user(request, f"Test push queued for {count} device(s).")
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Send test push",
            "form": form,
            "queryset": queryset,
            "opts": self.model._meta,
            "action": "send_test_push",
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/devices/test_push.html", context)

    @admin.action(description="Revoke selected devices", permissions=["change"])
    @asks_confirmation(
        "Their tokens stop working at once and their sockets are closed; "
        "a revoked device has to register again."
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            revocation.device_revoke(device=device)
        self.message_user(
            request, f"Revoked {queryset.count()} device(s).", messages.WARNING
        )


def e2ee_summary(encrypted: dict[str, str] | None) -> str:
    """ "end-to-end encrypted, N bytes" (the ciphertext's size), or ""."""
    if not encrypted:
        return ""
    size = len(encrypted.get("ct", "")) * 3 // 4  # unpadded base64url
    return f"end-to-end encrypted, {size:,} bytes (key {encrypted.get('kid', '?')})"


@admin.register(Message)
class MessageAdmin(GuardedModelAdmin):
    list_display = [
        "title",
        "app",
        "content",
        "priority",
        "collapse_key",
        "created_at",
        "expires_at",
    ]
    list_filter = ["app", "priority"]
    search_fields = ["=id", "title"]
    # An encrypted push's ciphertext is never shown as if it were text: only
    # what it is and its size (docs/e2ee.md).
    readonly_fields = [
        *(f.name for f in Message._meta.fields if f.name != "encrypted"),
        "content",
        "recalls_and_updates",
    ]
    actions = ["recall", "update_sent"]

    @admin.display(description="content")
    def content(self, message: Message) -> str:
        return e2ee_summary(message.encrypted) or "plain"

    @admin.display(description="recalled / updated")
    def recalls_and_updates(self, message: Message) -> str:
        if message.control:
            return "-"
        found = control_counts(message.pk)
        return (
            f"{found['recalled']} device(s) acknowledged a recall, "
            f"{found['updated']} an update"
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        message = self.get_object(request, object_id)
        offered = self.get_actions(request)
        extra_context = {
            **(extra_context or {}),
            "message_actions": [
                name
                for name in ("recall", "update_sent")
                if name in offered and message is not None and not message.control
            ],
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # A push sent by the API (or a test push) is recalled or updated here as
    # a campaign is on its page: the same confirmation and counts.
    @admin.action(description="Recall from every device", permissions=["change"])
    @asks_confirmation(
        "Devices that have it are told to remove it, now or when they "
        "reconnect; devices that have not received it never will.",
        label=recall_admin.MESSAGES.recall_label,
    )
    def recall(
        self, request: HttpRequest, queryset: QuerySet[Message]
    ) -> HttpResponse | None:
        recall_admin.MESSAGES.recall_each(self, request, queryset)
        return _back_to_change_page(request, queryset)

    @admin.action(description="Update what was sent", permissions=["change"])
    def update_sent(
        self, request: HttpRequest, queryset: QuerySet[Message]
    ) -> HttpResponse | None:
        page = recall_admin.MESSAGES.update_page(self, request, queryset)
        return page if page is not None else _back_to_change_page(request, queryset)


def _back_to_change_page(
    request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """An action run from an object's page lands back on that page."""
    if request.POST.get("return_to") != "change":
        return None
    obj = queryset.first()
    if obj is None:
        return None
    opts = obj._meta
    return redirect(
        reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    )


@admin.register(Delivery)
class DeliveryAdmin(GuardedModelAdmin):
    list_display = [
        "message",
        "device",
        "seq",
        "status",
        "sent_at",
        "delivered_at",
        "opened_at",
    ]
    list_filter = ["status"]
    search_fields = ["=device__id", "=message__id"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    list_select_related = ["message", "device"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Node)
class NodeAdmin(GuardedModelAdmin):
    """Server processes on every machine (docs/operations.md, "Presence")."""

    list_display = [
        "name",
        "hostname",
        "pid",
        "connections",
        "devices_online",
        "heartbeat_age",
        "alive",
        "draining",
        "started_at",
    ]
    list_filter = ["hostname", "draining"]
    readonly_fields = [f.name for f in Node._meta.fields]

    @admin.display(description="devices (presence)")
    def devices_online(self, node: Node) -> int:
        return Device.objects.filter(node=node.name).count()

    @admin.display(description="heartbeat", ordering="-heartbeat_at")
    def heartbeat_age(self, node: Node) -> str:
        age = (timezone.now() - node.heartbeat_at).total_seconds()
        return f"{max(0.0, age):.0f} s ago"

    @admin.display(boolean=True)
    def alive(self, node: Node) -> bool:
        # Dead after KPNS_NODE_DEAD_AFTER_SECONDS of silence: its devices are
        # marked offline at the next heartbeat of a live node or scheduler.
        age = (timezone.now() - node.heartbeat_at).total_seconds()
        return age < kpns_setting("NODE_DEAD_AFTER_SECONDS")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


# Server API: keys and webhooks -------------------------------------------------


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in apikeys.SCOPES],
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = ApiKey
        fields = ["app", "name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(GuardedModelAdmin):
    """Keys are created here (the key is shown once) and revoked, never edited."""

    form = ApiKeyForm
    list_display = [
        "name",
        "app",
        "prefix",
        "scope_list",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["app"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return [
            "app",
            "name",
            "prefix",
            "scope_list",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["app", "name", "scopes"]
        return self.get_readonly_fields(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An existing key is read-only (revoke it with the action).
        return obj is None and super().has_change_permission(request, obj)

    @admin.display(description="scopes")
    def scope_list(self, api_key: ApiKey) -> str:
        return ", ".join(api_key.scopes)

    def save_model(
        self, request: HttpRequest, obj: ApiKey, form: Any, change: bool
    ) -> None:
        if change:
            return  # nothing is editable
        created = apikeys.api_key_create(
            app=form.cleaned_data["app"],
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
        )
        obj.pk = created.api_key.pk
        self.message_user(
            request,
            f"API key created: {created.key} — copy it now, it is not shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    @asks_confirmation(
        "Requests with these keys are refused from now on; a revoked key "
        "cannot be restored."
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            apikeys.api_key_revoke(api_key=api_key)
        self.message_user(
            request, f"Revoked {queryset.count()} key(s).", messages.WARNING
        )


class WebhookEndpointForm(forms.ModelForm):
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["app", "url", "events", "description"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors or self.instance.pk:
            return cleaned
        try:
            webhooks.webhook_endpoint_validate(
                app=cleaned["app"],
                url=cleaned["url"],
                events=cleaned["events"],
                description=cleaned.get("description", ""),
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                for error in errors:
                    self.add_error(field if field in self.fields else None, error)
        return cleaned


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(GuardedModelAdmin):
    """Created here or through the API (same service); the secret is shown once."""

    form = WebhookEndpointForm
    list_display = ["url", "app", "event_list", "is_active", "created_at"]
    list_filter = ["app", "is_active"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["app", "url", "events", "description"]
        return ["app", "url", "event_list", "description", "is_active", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return ["app", "url", "event_list", "created_at"]

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is not None:
            kwargs["form"] = forms.ModelForm  # only description and is_active
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="events")
    def event_list(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.events)

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)  # description, active
            return
        created = webhooks.webhook_endpoint_create(
            app=form.cleaned_data["app"],
            url=form.cleaned_data["url"],
            events=form.cleaned_data["events"],
            description=form.cleaned_data.get("description", ""),
        )
        obj.pk = created.pk
        self.message_user(
            request,
            f"Signing secret: {created.secret} — copy it now, it is not shown again.",
            messages.WARNING,
        )

    def delete_model(self, request: HttpRequest, obj: WebhookEndpoint) -> None:
        webhooks.webhook_endpoint_delete(endpoint=obj)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(GuardedModelAdmin):
    """The webhook call log: each event, its attempts and the last error."""

    list_display = [
        "event",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event"]
    search_fields = ["=event_id"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    list_select_related = ["endpoint"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
