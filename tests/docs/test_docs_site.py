"""The docs site builds with ``mkdocs build --strict``, offline, and a broken link fails the build."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

MKDOCS = Path(sys.executable).parent / "mkdocs"


def build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of the site at ``root`` into ``site``."""
    return subprocess.run(
        [MKDOCS, "build", "--strict", "--site-dir", site],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": str(MKDOCS.parent), "NO_MKDOCS_2_WARNING": "1"},
    )


def test_site_builds_strictly(tmp_path: Path) -> None:
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "layout.html").is_file()
    # Offline: no page loads a script, stylesheet, font or image from another host.
    remote = re.compile(r'<(?:script|img|iframe)[^>]* src="(?:https?:)?//|<link[^>]* href="(?:https?:)?//')
    fetching = [page.name for page in (tmp_path / "site").rglob("*.html") if remote.search(page.read_text("utf-8"))]
    assert not fetching


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The site's sources (mkdocs.yml, docs/) in a folder of their own."""
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    return tmp_path


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("[gone](no-such-page.md)", "no-such-page.md"),
        ("[gone](gate.md#no-such-anchor)", "no-such-anchor"),
    ],
)
def test_a_broken_link_fails_the_build(copy: Path, link: str, message: str) -> None:
    page = copy / "docs" / "errors.md"
    page.write_text(page.read_text(encoding="utf-8") + f"\nSee {link}.\n", encoding="utf-8")
    result = build(copy, copy / "site")
    assert result.returncode == 1
    assert message in result.stderr


def test_every_page_is_in_the_nav() -> None:
    """A page missing from ``nav`` would build, but no reader could reach it from the menu."""

    def pages(entries: object) -> set[str]:
        if isinstance(entries, str):
            return {entries}
        if isinstance(entries, list):
            return set().union(*(pages(entry) for entry in entries))
        if isinstance(entries, dict):
            return set().union(*(pages(entry) for entry in entries.values()))
        return set()

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert pages(config["nav"]) == {path.name for path in (ROOT / "docs").glob("*.md")}


def test_nothing_is_fetched_from_the_network() -> None:
    """Material's defaults fetch Google Fonts; the site must build and read offline."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert config["theme"]["font"] is False
    # Material's offline plugin loads a shim from unpkg.com; social cards and privacy download.
    assert config["plugins"] == ["search"]
