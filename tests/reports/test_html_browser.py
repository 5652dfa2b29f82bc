"""The HTML trend report in a real browser (headless Chromium): it renders, runs no script that
fails, breaks no Content-Security-Policy rule and asks the network for nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.cli.main import main
from exporter.reports.html import CSP
from tests.support.browser import render, require_chromium
from tests.support.generated_archive import write_archive

pytest.importorskip("matplotlib")  # the html extra; make setup installs it

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    write_archive(root / "archive", 240, every_nth_without=9)
    report = root / "trend-analysis-report.md"
    assert main(["trends", "--archive", str(root / "archive"), "--format", "html",
                 "--report", str(report)]) == 0  # fmt: skip
    return report.with_suffix(".html")


def test_report_renders_cleanly(report_page):
    browser = require_chromium()
    seen = render(report_page, binary=browser)
    assert seen.returncode == 0
    assert seen.console == []  # no script error, no blocked fetch, no warning
    assert seen.page_requests == []
    assert "<h1>Batch Operations Trend Analysis</h1>" in seen.dom
    assert seen.dom.count("<svg") >= 24
    # Without its Content-Security-Policy the page still fetches nothing: it references
    # nothing outside itself, rather than having its fetches blocked.
    open_page = report_page.with_name("no-csp.html")
    text = report_page.read_text(encoding="utf-8")
    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    assert meta in text
    open_page.write_text(text.replace(meta, ""), encoding="utf-8")
    seen = render(open_page, binary=browser)
    assert (seen.returncode, seen.console, seen.page_requests) == (0, [], [])


def test_screenshot_is_a_picture(report_page, tmp_path):
    browser = require_chromium()
    png = tmp_path / "shot.png"
    seen = render(report_page, binary=browser, screenshot=png, size=(1000, 800))
    assert (seen.returncode, seen.console, seen.page_requests) == (0, [], [])
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1000  # IHDR width


def test_the_check_sees_script_errors_and_fetches(tmp_path):
    """The two checks above would catch a broken page: a failing script, a remote image."""
    browser = require_chromium()
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="http://example.invalid/pixel.png">'
        '<script>throw new Error("boom from the page")</script></body></html>',
        encoding="utf-8",
    )
    seen = render(bad, binary=browser)
    assert any("Uncaught Error: boom from the page" in m for m in seen.console)
    assert any("example.invalid" in r for r in seen.page_requests)
    guarded = tmp_path / "guarded.html"
    guarded.write_text(
        f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        f'content="{CSP}"><title>g</title></head><body>'
        '<img src="http://example.invalid/pixel.png"></body></html>',
        encoding="utf-8",
    )
    seen = render(guarded, binary=browser)
    assert seen.page_requests == []  # blocked by the policy ...
    assert any("Content Security Policy" in m for m in seen.console)  # ... and reported
