"""The docs page in process: every asset it names is a path on the service itself."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import bentoml._internal.server as bentoml_server

from conveyor.serving.docs import ASSETS, docs_page
from tests.serving.conftest import Served

# Where BentoML keeps the files it serves under ASSETS.
STATIC = Path(bentoml_server.__file__).parent / "static_content"


class Assets(HTMLParser):
    """Every URL an HTML page makes the browser fetch (``src``, ``href``), and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href", "srcset", "data") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)


def assets(page: str) -> Assets:
    """The page parsed."""
    parser = Assets()
    parser.feed(page)
    return parser


def test_the_docs_page_fetches_nothing_from_another_host(served: Served) -> None:
    response = served.request("GET", "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = assets(response.text)
    assert page.urls, "the page names no asset: the test would pass on anything"
    for url in page.urls:
        parts = urlsplit(url)
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith(f"{ASSETS}/"), url
        assert (STATIC / url.removeprefix(f"{ASSETS}/")).is_file(), url
    assert "googletagmanager" not in response.text
    assert "//" not in "".join(page.scripts).replace("<\\/", ""), page.scripts
    assert '"url": "/docs.json"' in response.text
    assert '"validatorUrl": null' in response.text


def test_the_title_is_escaped_and_the_script_cannot_be_closed_early() -> None:
    page = docs_page(title="<b>model</b>", openapi_url="/docs.json?x=</script>").decode()
    assert "<title>&lt;b&gt;model&lt;/b&gt;</title>" in page
    assert page.count("</script>") == 2
