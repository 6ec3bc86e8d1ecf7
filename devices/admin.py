"""The devices side of the marketers' admin: apps, devices, messages, nodes."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from devices import pushes, registry
from devices.conf import kpns_setting
from devices.models import App, Delivery, Device, Message, Node


@admin.register(App)
class AppAdmin(admin.ModelAdmin):
    list_display = ["name", "client_key", "online", "default_timezone", "created_at"]
    readonly_fields = ["client_key", "created_at"]
    search_fields = ["name"]

    def save_model(
        self, request: HttpRequest, obj: App, form: Any, change: bool
    ) -> None:
        if not change:
            created = registry.app_create(
                name=obj.name, default_timezone=obj.default_timezone
            )
            obj.pk, obj.client_key = created.pk, created.client_key
            return
        super().save_model(request, obj, form, change)

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


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "app",
        "platform",
        "alias",
        "is_online",
        "last_seen_at",
        "is_active",
    ]
    list_filter = [OnlineFilter, "app", "platform", "is_active"]
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

    @admin.display(description="tags")
    def tag_list(self, device: Device) -> str:
        return ", ".join(registry.device_tags(device=device))

    @admin.action(description="Send test push to selected devices")
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

    @admin.action(description="Revoke selected devices")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            registry.device_revoke(device=device)
        self.message_user(
            request, f"Revoked {queryset.count()} device(s).", messages.WARNING
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "app",
        "priority",
        "collapse_key",
        "created_at",
        "expires_at",
    ]
    list_filter = ["app", "priority"]
    search_fields = ["=id", "title"]
    readonly_fields = [f.name for f in Message._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
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
class NodeAdmin(admin.ModelAdmin):
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
