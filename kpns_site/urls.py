from django.contrib import admin
from django.urls import include, path

from kpns_site.demo import demo
from kpns_site.health import healthz, readyz
from kpns_site.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include("devices.api.urls")),
    path("demo/", demo, name="demo"),
]
