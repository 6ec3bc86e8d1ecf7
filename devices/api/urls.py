from django.urls import path

from devices.api import views

urlpatterns = [
    path(
        "devices/register", views.DeviceRegisterView.as_view(), name="device-register"
    ),
    path("device", views.DeviceSelfView.as_view(), name="device-self"),
]
