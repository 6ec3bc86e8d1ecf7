"""/demo/: a virtual device in the browser, built on the JavaScript SDK.

It registers the browser as a device of the demo app (the app named "Demo
app" that `manage.py kpns_demo` creates, or the app whose client key is given
as ?app=) and shows the pushes it receives. ?tags=vip,beta sets its tags and
?alias=user-42 its alias, so that a campaign can target it.
"""

import re

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from campaigns.management.commands.kpns_demo import DEMO_APP
from devices.models import App

MAX_TAGS = 50
TAG = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@require_GET
def demo(request: HttpRequest) -> HttpResponse:
    key = request.GET.get("app", "").strip()
    if key:
        app = App.objects.filter(client_key=key).first()
    else:
        app = App.objects.filter(name=DEMO_APP).order_by("pk").first()
    if app is None:
        problem = (
            f"No app with the client key {key!r}."
            if key
            else f'No app named "{DEMO_APP}": run `manage.py kpns_demo` (or '
            "`make run`), or open /demo/?app=<client key>."
        )
        return render(request, "demo/index.html", {"problem": problem}, status=404)
    tags = [
        tag
        for tag in (part.strip() for part in request.GET.get("tags", "").split(","))
        if TAG.match(tag)
    ][:MAX_TAGS]
    encoding = "kmpp" if request.GET.get("encoding") == "kmpp" else "json"
    config = {
        "clientKey": app.client_key,
        "appName": app.name,
        "tags": tags,
        "alias": request.GET.get("alias", "")[:128],
        "encoding": encoding,
    }
    return render(request, "demo/index.html", {"config": config, "app": app})
