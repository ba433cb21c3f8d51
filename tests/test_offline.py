"""Nothing a page loads comes from outside: CastRay must work on a network without internet.

The interactive API docs (Swagger UI, ReDoc) are served from the drf-spectacular-sidecar
package, and the pages' own templates and static files name no outside address.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.test import Client

BASE_DIR = Path(__file__).resolve().parent.parent
# XML namespaces name a vocabulary; nothing is fetched from them.
NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
URL = re.compile(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"'<>)]*", re.IGNORECASE)


class _Assets(HTMLParser):
    """The addresses a browser fetches while loading a page: scripts, stylesheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "iframe") and found.get("src"):
            self.urls.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.urls.append(found["href"] or "")


def assets_of(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_load_only_local_assets_and_each_answers(client: Client, alice, path: str) -> None:  # type: ignore[no-untyped-def]
    client.force_login(alice)  # the docs are for signed-in users
    response = client.get(path)
    assert response.status_code == 200
    urls = assets_of(response.content.decode())
    assert any(url.endswith(".js") for url in urls), urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{path} loads {url} from outside"
        asset = client.get(url)
        assert asset.status_code == 200, url
        asset.close()


def test_no_template_or_static_file_names_an_outside_address() -> None:
    roots = [BASE_DIR / "templates", BASE_DIR / "castray_site" / "static"]
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.suffix not in (".html", ".js", ".css", ".svg", ".txt"):
                continue
            for url in URL.findall(path.read_text()):
                if url.rstrip("/") not in NAMESPACES:
                    found.append(f"{path.relative_to(BASE_DIR)}: {url}")
    assert not found, found
