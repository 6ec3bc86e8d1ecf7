"""Saved templates in the server API: thin views over
campaigns.saved_templates (the admin's rules), with their serializers."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns import saved_templates
from campaigns.models import MessageTemplate
from devices.api.base import KeysetPagination, ServerAPIView, idempotent, paginated
from devices.api.schema import IDEMPOTENCY_KEY, problem
from devices.api.serializers import StrictSerializer
from devices.models import App

PLACEHOLDERS = (
    "Title, body and data's string values may hold placeholders, "
    '`{{ first_name|default:"there" }}`, filled per device when a campaign '
    "is sent (docs/api.md, Placeholders)."
)


class TemplateSerializer(serializers.ModelSerializer):
    # Plain strings: "" (none) is not a URI.
    url = serializers.CharField(read_only=True)
    image = serializers.CharField(read_only=True)

    class Meta:
        model = MessageTemplate
        fields = [
            "id",
            "name",
            "title",
            "body",
            "url",
            "image",
            "data",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TemplateWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    title = serializers.CharField(max_length=200, help_text=PLACEHOLDERS)
    body = serializers.CharField(required=False, allow_blank=True, max_length=4096)
    url = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    image = serializers.URLField(required=False, allow_blank=True, max_length=1000)
    data = serializers.DictField(required=False)


class TemplateListQuerySerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)


def template_of_app(app: App, template_id: Any) -> MessageTemplate:
    template = MessageTemplate.objects.filter(app=app, pk=template_id).first()
    if template is None:
        raise NotFound("No such template for this app.")
    return template


def content_from_template(app: App, fields: dict[str, Any]) -> dict[str, Any]:
    """A campaign's fields with `template` replaced by its content; the
    request's own fields win over the template's."""
    fields = dict(fields)
    template_id = fields.pop("template", None)
    if template_id is None:
        return fields
    template = MessageTemplate.objects.filter(app=app, pk=template_id).first()
    if template is None:
        raise ValidationError({"template": ["No such template for this app."]})
    content = saved_templates.template_content(template)
    return {**content, **fields}


@extend_schema(tags=["templates"])
class TemplateCollectionView(ServerAPIView):
    scopes = {"GET": "campaigns:read", "POST": "campaigns:write"}
    query_serializer = TemplateListQuerySerializer
    pagination_class = KeysetPagination

    @extend_schema(
        summary="List templates",
        description="Newest first; `?name=` finds one by its name.",
        parameters=[TemplateListQuerySerializer],
        responses=TemplateSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        query = TemplateListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        templates = MessageTemplate.objects.filter(app=self.app, **query.validated_data)
        return paginated(self, templates, TemplateSerializer, ordering="-id")

    @extend_schema(
        summary="Save a template",
        description=PLACEHOLDERS + " A placeholder that does not parse, or "
        "content whose longest rendering would pass the payload limit, is a "
        "400 naming the field.",
        parameters=[IDEMPOTENCY_KEY],
        request=TemplateWriteSerializer,
        responses={201: TemplateSerializer, **problem(422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        incoming = TemplateWriteSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        template = saved_templates.template_create(
            app=self.app, **incoming.validated_data
        )
        return Response(TemplateSerializer(template).data, status=201)


@extend_schema(tags=["templates"])
class TemplateItemView(ServerAPIView):
    scopes = {
        "GET": "campaigns:read",
        "PATCH": "campaigns:write",
        "DELETE": "campaigns:write",
    }

    @extend_schema(summary="Read a template", responses=TemplateSerializer)
    def get(self, request: Request, template_id: int) -> Response:
        return Response(TemplateSerializer(template_of_app(self.app, template_id)).data)

    @extend_schema(
        summary="Update a template",
        description="Campaigns made from it keep the content they copied.",
        request=TemplateWriteSerializer,
        responses=TemplateSerializer,
    )
    def patch(self, request: Request, template_id: int) -> Response:
        template = template_of_app(self.app, template_id)
        incoming = TemplateWriteSerializer(data=request.data, partial=True)
        incoming.is_valid(raise_exception=True)
        template = saved_templates.template_update(
            template=template, **incoming.validated_data
        )
        return Response(TemplateSerializer(template).data)

    @extend_schema(summary="Delete a template", responses={204: None})
    def delete(self, request: Request, template_id: int) -> Response:
        saved_templates.template_delete(template=template_of_app(self.app, template_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
