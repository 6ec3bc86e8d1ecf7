"""The API's documentation pages make no request to another host."""

import re

import pytest

# Any URL with a host: src/href attributes, CSS url(), @import, preconnects.
EXTERNAL = re.compile(
    r"""(?:(?:src|href)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)(?:https?:)?//""",
    re.I,
)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "asset"),
    [
        (
            "/api/redoc/",
            "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js",
        ),
        (
            "/api/docs/",
            "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        ),
    ],
)
def test_docs_pages_reference_no_external_host(client, path, asset):
    page = client.get(path)
    assert page.status_code == 200
    html = page.content.decode()
    assert asset in html
    assert not EXTERNAL.search(html), EXTERNAL.search(html)
    assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html
    # The assets it loads are served by this server.
    for src in re.findall(r"""src=["']([^"']+)""", html):
        assert src.startswith("/static/"), src
        assert client.get(src).status_code == 200
