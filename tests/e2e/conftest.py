import os

import pytest
import redis


@pytest.fixture(scope="session")
def redis_url():
    """A reachable Redis (REDIS_URL or the local default), else skip saying why."""
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"end-to-end tests need Redis at {url}: {exc}")
    return url
