import pytest

from tests.e2e.conftest import redis_url  # noqa: F401  (the shared fixture)


@pytest.fixture
def redis_layer(settings, redis_url):  # noqa: F811
    """This test process sends through the same Redis as its servers."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, "socket_timeout": 10}]},
        }
    }
