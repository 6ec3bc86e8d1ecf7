from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from devices.native.api import service_worker
from kpns_site.demo import demo
from kpns_site.health import healthz, readyz
from kpns_site.metrics_endpoint import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("devices.api.urls")),
    path("api/v1/", include("devices.native.urls")),
    path("api/v1/", include("campaigns.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema"),
        name="api-docs",
    ),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="api-schema"),
        name="api-redoc",
    ),
    path("demo/", demo, name="demo"),
    # The JS SDK's service worker (Web Push), scoped to the whole site.
    path("sw.js", service_worker, name="service-worker"),
]

# Unknown URLs under /api/ answer problem JSON; elsewhere the usual page.
handler404 = "devices.api.problems.api_not_found"
