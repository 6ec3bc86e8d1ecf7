"""Deployment checks for kpns_site.middleware.

Django's deploy checks look for its security, CSRF and frame-options
middleware by dotted path, so they cannot see the subclasses of
kpns_site/middleware.py that run the same hooks without thread hops:
settings.py silences those three warnings (security.W001-W003) and this
check takes their place, by class instead of by path.
"""

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.middleware import clickjacking, csrf, security
from django.utils.module_loading import import_string

REQUIRED = {
    "kpns.W001": security.SecurityMiddleware,
    "kpns.W002": clickjacking.XFrameOptionsMiddleware,
    "kpns.W003": csrf.CsrfViewMiddleware,
}


@register(Tags.security, deploy=True)
def security_middleware_installed(app_configs: Any = None, **kwargs: Any) -> list:
    installed = []
    for path in settings.MIDDLEWARE:
        try:
            installed.append(import_string(path))
        except ImportError:
            continue
    return [
        Warning(
            f"No {required.__module__}.{required.__name__} (or subclass) in "
            "MIDDLEWARE: its protection is off.",
            id=check_id,
        )
        for check_id, required in REQUIRED.items()
        if not any(isinstance(m, type) and issubclass(m, required) for m in installed)
    ]
