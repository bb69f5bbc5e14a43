"""pipelines/serving/dashboard/pages.py: templates and static assets from the package, plotly.js from plotly's."""

from __future__ import annotations

import gzip
from importlib import resources

from pipelines.serving.dashboard.pages import PLOTLY_FILE, Asset, Pages


def test_plotly_is_the_installed_packages_bundle_and_ours_are_package_files() -> None:
    pages = Pages()
    plotly = pages.asset(PLOTLY_FILE)
    assert plotly.body == (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    assert gzip.decompress(plotly.gzipped) == plotly.body and len(plotly.gzipped) < len(plotly.body) / 2
    assert (plotly.media_type, plotly.max_age_s) == ("text/javascript; charset=utf-8", 604800)
    script = pages.asset("dashboard.js")
    assert b"/dashboard/api/" in script.body and script.max_age_s == 0
    assert pages.asset("dashboard.css").media_type == "text/css; charset=utf-8"
    assert [pages.asset(name) for name in ("../api.py", ".hidden.js", "nothing.js", "index.html")] == [None] * 4


def test_an_asset_url_changes_with_its_content() -> None:
    pages = Pages()
    url = pages.asset_url("dashboard.js")
    assert url == f"/dashboard/static/dashboard.js?v={pages.asset('dashboard.js').etag.strip(chr(34))[:12]}"
    assert Asset.of(b"a", "x.js", 0).etag != Asset.of(b"b", "x.js", 0).etag
    assert Asset.of(b"a", "x.js", 0).etag == Asset.of(b"a", "y.js", 0).etag


def test_pages_escape_what_they_show_and_carry_the_security_headers() -> None:
    response = Pages().render("login.html", status_code=401, next='/"><script>', message="<b>no</b>")
    html = response.body.decode()
    assert response.status_code == 401 and "&lt;b&gt;no&lt;/b&gt;" in html and '/&#34;&gt;&lt;script&gt;' in html
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
