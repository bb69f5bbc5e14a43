"""The dashboard's HTML pages and static files: Jinja templates and assets served from this package.

plotly.js comes from the installed plotly package (its bundled `plotly.min.js`), never a CDN. Assets are read once,
gzipped once, and served with an ETag; a page links each by a URL holding a hash of its content, so browsers keep
plotly.js for a week and check ours on every load.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from dataclasses import dataclass
from importlib import resources

from fastapi import Request, Response
from jinja2 import Environment, PackageLoader, select_autoescape

PLOTLY_FILE = "plotly.min.js"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".svg": "image/svg+xml", ".png": "image/png"}
# plotly.js adds <style> elements at run time, hence 'unsafe-inline' for styles only; scripts come from here alone.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
               "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_POLICY, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


@dataclass(frozen=True)
class Asset:
    """A static file as served: its bytes, gzipped bytes, media type, ETag and how long browsers may keep it."""

    body: bytes
    gzipped: bytes
    media_type: str
    etag: str
    max_age_s: int

    @classmethod
    def of(cls, body: bytes, name: str, max_age_s: int) -> Asset:
        """An asset from its bytes; the media type from the name's extension."""
        suffix = name[name.rfind("."):]
        return cls(body, gzip.compress(body, compresslevel=6, mtime=0), MEDIA_TYPES.get(suffix, "application/octet-stream"),
                   f'"{hashlib.sha256(body).hexdigest()[:20]}"', max_age_s)

    def response(self, request: Request) -> Response:
        """200 with the (gzipped, if accepted) body, or 304 when the browser's copy is current."""
        headers = {"ETag": self.etag, "Cache-Control": f"public, max-age={self.max_age_s}", "Vary": "Accept-Encoding",
                   "X-Content-Type-Options": "nosniff"}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(self.gzipped, media_type=self.media_type, headers={**headers, "Content-Encoding": "gzip"})
        return Response(self.body, media_type=self.media_type, headers=headers)


class Pages:
    """The templates and the static assets, loaded on first use and kept."""

    def __init__(self) -> None:
        self._templates = Environment(loader=PackageLoader("pipelines.serving.dashboard", "templates"),
                                      autoescape=select_autoescape(["html"]))
        self._assets: dict[str, Asset] = {}
        self._lock = threading.Lock()

    def asset(self, name: str) -> Asset | None:
        """A static file of this package, or plotly.js; None for any other name."""
        with self._lock:
            if name not in self._assets:
                body = _read_asset(name)
                if body is None:
                    return None
                # Our files change with the code (no-cache: revalidated by ETag); plotly's URL names its version.
                self._assets[name] = Asset.of(body, name, 7 * 24 * 3600 if name == PLOTLY_FILE else 0)
            return self._assets[name]

    def asset_url(self, name: str) -> str:
        """The URL a page links an asset by, changing whenever its content does (so no stale copy is used)."""
        asset = self.asset(name)
        version = asset.etag.strip('"')[:12] if asset else "missing"
        return f"/dashboard/static/{name}?v={version}"

    def render(self, template: str, status_code: int = 200, **values: object) -> Response:
        """An HTML page with the dashboard's security headers."""
        html = self._templates.get_template(template).render(asset=self.asset_url, **values)
        return Response(html, status_code=status_code, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _read_asset(name: str) -> bytes | None:
    if name == PLOTLY_FILE:
        return (resources.files("plotly") / "package_data" / PLOTLY_FILE).read_bytes()
    if "/" in name or name.startswith(".") or name[name.rfind("."):] not in MEDIA_TYPES:
        return None
    path = resources.files("pipelines.serving.dashboard") / "static" / name
    return path.read_bytes() if path.is_file() else None
