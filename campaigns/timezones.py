"""The marketer's time zone: every time in the admin is shown and taken in it.

A tiny script in the admin's base template (templates/admin/base_site.html)
stores the browser's IANA zone in the ``kpns_tz`` cookie; the marketer can
pick another one on the page, which stores it in the same cookie. This
middleware activates it for the request (``django.utils.timezone.activate``),
so forms, lists and the admin's date widgets all speak that zone, and the
page names it. Without a cookie (or with an unknown zone) times stay UTC.
"""

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

COOKIE = "kpns_tz"


def zone_from_cookie(value: str | None) -> zoneinfo.ZoneInfo | None:
    if not value or len(value) > 64:
        return None
    try:
        return zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class TimezoneMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = zone_from_cookie(request.COOKIES.get(COOKIE))
        if zone is None:
            timezone.deactivate()
            return self.get_response(request)
        timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
