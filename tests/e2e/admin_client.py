"""Drive the real admin over HTTP: login, CSRF, changelist actions."""

import re

import httpx

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class AdminClient:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10, follow_redirects=True)

    def login(self, username: str, password: str) -> None:
        page = self.http.get("/admin/login/")
        response = self.http.post(
            "/admin/login/?next=/admin/",
            data={
                "csrfmiddlewaretoken": self._csrf(page.text),
                "username": username,
                "password": password,
            },
        )
        assert "Log out" in response.text or "logout" in response.text, response.text[
            :500
        ]

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def post_form(
        self, path: str, data: dict, page_path: str | None = None
    ) -> httpx.Response:
        page = self.http.get(page_path or path)
        return self.http.post(
            path, data={**data, "csrfmiddlewaretoken": self._csrf(page.text)}
        )

    def action(
        self, changelist: str, action: str, ids: list, **extra: str
    ) -> httpx.Response:
        data = {"action": action, "_selected_action": [str(i) for i in ids], **extra}
        return self.post_form(changelist, data)

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _csrf(html: str) -> str:
        match = CSRF.search(html)
        assert match, "no CSRF token on the page"
        return match.group(1)
