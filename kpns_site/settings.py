"""KPNS settings, read from the environment (see docs/operations.md).

With nothing set, KPNS runs embedded: SQLite under var/ and an in-process
channel layer (one server process). DATABASE_URL and REDIS_URL move it onto
PostgreSQL and Redis, where any number of Daphne processes can share the work.
"""

import os
import secrets
from pathlib import Path

import environ

from devices.conf import from_environment as kpns_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment; in DEBUG a dev key kept under var/."""
    if "SECRET_KEY" in env.ENVIRON:
        return env.str("SECRET_KEY")
    if not DEBUG:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    key_file = VAR_DIR / "dev-secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "devices",
    "devices.native",
    "campaigns",
]

MIDDLEWARE = [
    # Request ids and the access log line (kpns_site/logs.py).
    "kpns_site.logs.request_id_middleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The marketer's own time zone for the admin (campaigns/timezones.py).
    "campaigns.timezones.TimezoneMiddleware",
]

ROOT_URLCONF = "kpns_site.urls"
ASGI_APPLICATION = "kpns_site.asgi.application"
WSGI_APPLICATION = "kpns_site.wsgi.django_application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # templates/ of a checkout; an installed wheel ships it as
        # kpns_site/templates/ (pyproject.toml, package-dir).
        "DIRS": [BASE_DIR / "templates", Path(__file__).resolve().parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Databases. Async code reaches the ORM through database_sync_to_async, which
# runs close_old_connections around every call. With CONN_MAX_AGE=0 that
# opened a new PostgreSQL connection per call (a connect storm ran at 43
# handshakes/s), so connections are reused for a bounded age. Health checks
# stay off: they cost a "SELECT 1" before every such call (18% of a connect
# storm's samples). A connection that died with its server fails one query,
# Django marks it unusable and drops it on the next call
# (django/channels #871, #1234).
DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'kpns.sqlite3'}"
    )
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL plus IMMEDIATE transactions let the server and the scheduler write
    # the same file without "database is locked" errors.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file (not memory) so that end-to-end tests' server processes share
    # it; one per test process so that parallel runs never collide.
    DATABASES["default"]["TEST"] = {
        "NAME": str(VAR_DIR / f"test-kpns-{os.getpid()}.sqlite3")
    }
else:
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # A database host that stops answering (packets dropped, not refused):
    # libpq closes a connection whose sent data stays unacknowledged for
    # DB_TCP_USER_TIMEOUT_MS, and TCP keepalives find a dead idle one, so
    # the waiting query fails (503 problem JSON, retried) instead of
    # holding its thread until the kernel gives up minutes later.
    DATABASES["default"]["OPTIONS"].update(
        {
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            "tcp_user_timeout": env.int("DB_TCP_USER_TIMEOUT_MS", default=10_000),
        }
    )
    # PostgreSQL with DB_POOL=true: Django's psycopg pool, one per process.
    # HTTP requests close their connection when they finish
    # (kpns_site/requestdb.py); with the pool that is a checkout instead of
    # a new connection, and close_old_connections around every socket-path
    # call costs a checkout too.
    # Without a pool, concurrent API requests each hold a connection of
    # their own (one thread per request): a burst of 128 requests ran
    # PostgreSQL out of connections. DB_POOL=false (behind PgBouncer, say)
    # keeps per-thread connections instead.
    if env.bool("DB_POOL", default=True):
        # The pool retries a lost connection every second, not after 1, 2,
        # 4, 8, 16 s: devices/patches/psycopg_pool.py, installed at start.
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env.int("DB_POOL_MIN", default=2),
            "max_size": env.int("DB_POOL_MAX", default=10),
            # Waiting for a free connection is bounded like any network
            # call: past it the request fails (503 problem JSON), not hangs.
            "timeout": env.float("DB_POOL_TIMEOUT", default=3.0),
            "max_idle": 300,
        }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in-process when neither REDIS_URL nor REDIS_SENTINELS is set.
# REDIS_SENTINELS (host:port,host:port) + REDIS_SENTINEL_MASTER find the
# master through Redis Sentinel and follow its failovers (docs/operations.md).
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_SENTINELS = env.list("REDIS_SENTINELS", default=[])
REDIS_SENTINEL_MASTER = env.str("REDIS_SENTINEL_MASTER", default="mymaster")
_REDIS_OPTIONS = {
    # redis-py 8 raises past max_connections instead of waiting; its 5 s
    # read timeout equals the layer's 5 s BLPOP and kills the receiver
    # (docs/field-notes.md, traps 1-2).
    "max_connections": 500,
    "socket_timeout": 10,
    "socket_connect_timeout": 3,
    "health_check_interval": 15,
}
if REDIS_SENTINELS:
    _REDIS_HOST = {
        "sentinels": [
            (host, int(port))
            for host, port in (item.rsplit(":", 1) for item in REDIS_SENTINELS)
        ],
        "master_name": REDIS_SENTINEL_MASTER,
        "sentinel_kwargs": {
            "socket_timeout": 2,
            "socket_connect_timeout": 2,
            **(
                {"password": env.str("REDIS_SENTINEL_PASSWORD")}
                if "REDIS_SENTINEL_PASSWORD" in env.ENVIRON
                else {}
            ),
        },
        "db": env.int("REDIS_DB", default=0),
        **(
            {"password": env.str("REDIS_PASSWORD")}
            if "REDIS_PASSWORD" in env.ENVIRON
            else {}
        ),
        **_REDIS_OPTIONS,
    }
else:
    _REDIS_HOST = {"address": REDIS_URL, **_REDIS_OPTIONS}
if REDIS_URL or REDIS_SENTINELS:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [_REDIS_HOST],
                # Only node channels (one per server process) receive; a
                # node carries every wake-up for all of its sockets, so the
                # default capacity of 100 would drop them
                # (docs/field-notes.md, trap 4).
                "capacity": 20_000,
                "expiry": 30,
                "group_expiry": 120,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 20_000, "expiry": 30, "group_expiry": 120},
        }
    }

# Cache: with REDIS_URL, Redis (shared by every server process) with a short
# socket timeout. The API's rate limits count in Redis through a client of
# their own, and in this cache only without REDIS_URL
# (devices/api/throttling.py).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "kpns",
            "OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# Static files (the admin's CSS and JS, the SDK) are served by the app itself:
# from the source tree in DEBUG, from `collectstatic` output otherwise.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# LOG_FORMAT=json for one JSON object per line (the production layout);
# both formats carry request ids and redact tokens (kpns_site/logs.py).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
# Also routes warnings and uncaught exceptions into JSON lines (logs.py).
LOGGING_CONFIG = "kpns_site.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "kpns_site.logs.ContextFilter"}},
    "formatters": {
        "plain": {
            "()": "kpns_site.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "kpns_site.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # Django's own handlers (a plain-text console in DEBUG, mail to
        # ADMINS) are replaced: its lines reach the console above, once.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
    },
}

# Behind a TLS-terminating proxy (docs/operations.md).
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# KPNS tunables: every default is documented in docs/operations.md and read
# through devices.conf, never at import time elsewhere.
# Every tunable, with its documented default, from KPNS_<NAME> where set
# (devices/conf.py is the one table; docs/operations.md documents each).
KPNS = kpns_from_environment(os.environ)

# /metrics (kpns_site/metrics.py): Prometheus sends
# "Authorization: Bearer <KPNS_METRICS_TOKEN>"; staff may look in a browser.
KPNS_METRICS_TOKEN = env.str("KPNS_METRICS_TOKEN", default="")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "devices.api.schema.KpnsAutoSchema",
    "EXCEPTION_HANDLER": "devices.api.problems.problem_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only: never past KPNS_MAX_REQUEST_BODY_BYTES (413), never nested
    # past 64 levels, never a NUL character (400).
    "DEFAULT_PARSER_CLASSES": ["kpns_site.jsonbody.JSONBodyParser"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "KPNS API",
    "DESCRIPTION": "Push notifications over WebSockets: devices, pushes, campaigns.",
    "VERSION": "1.0.0",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from drf-spectacular-sidecar: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "CampaignStatusEnum": "campaigns.models.CampaignStatus",
        "DeliveryStatusEnum": "devices.models.DeliveryStatus",
    },
    "TAGS": [
        {"name": "device", "description": "For device SDKs (client key, token)."},
        {"name": "devices", "description": "The app's devices (API key)."},
        {"name": "pushes", "description": "Direct pushes (API key)."},
        {"name": "campaigns", "description": "Campaigns (API key)."},
        {"name": "messages", "description": "Delivery status (API key)."},
        {"name": "presence", "description": "Who is online (API key)."},
        {"name": "webhooks", "description": "Signed event calls (API key)."},
    ],
}
