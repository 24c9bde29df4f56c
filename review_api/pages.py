"""Review web pages served by the API: `/review/{id}` (player + transcript) and `/search`.

Plain HTML + JS from `review_api/static/` (no build step, nothing loaded from elsewhere).
The pages are static shells: they call the JSON API with the user's API token, which they
take from `?token=` (then drop from the address bar) or from localStorage, or ask for
in a small form. So serving the HTML needs no token; every byte of data does.

    /review/{id}#t=123.4   seek to 123.4 s on load (search results link here)
    /search?q=…&role=…     transcript search with highlighted snippets
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse

from core import keys
from core.errors import NotFound

router = APIRouter(tags=["pages"], include_in_schema=False)

STATIC = Path(__file__).parent / "static"
ASSETS = {"review.js": "text/javascript", "search.js": "text/javascript", "common.js": "text/javascript",
          "review.css": "text/css"}


def content_security_policy(public_url: str = "") -> str:
    """Only this origin (and the configured public URL) may serve scripts, data and media."""
    origin = ""
    if public_url:
        parts = urlsplit(public_url)
        origin = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src 'self' blob: data:{origin}; media-src 'self' blob:{origin}; connect-src 'self'{origin}; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def _page(request: Request, name: str) -> FileResponse:
    headers = {"Content-Security-Policy": content_security_policy(request.app.state.settings.public_url),
               "Referrer-Policy": "no-referrer",  # page URLs may carry ?token=
               "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/review/{recording_id}")
def review_page(recording_id: str, request: Request) -> FileResponse:
    """Replay one interview: video, synced transcript, captions, media gaps, progress."""
    keys.check_id(recording_id, "recording_id")
    return _page(request, "review.html")


@router.get("/search")
def search_page(request: Request) -> FileResponse:
    """Search what was said across the org's interviews; hits link to `/review/{id}#t=…`."""
    return _page(request, "search.html")


@router.get("/review")
def review_index(request: Request) -> RedirectResponse:
    query = request.url.query
    return RedirectResponse("/search" + (f"?{query}" if query else ""), status_code=307)


@router.get("/static/review/{name}")
def review_asset(name: str) -> FileResponse:
    """The pages' scripts and stylesheet (a fixed list: nothing else under the directory)."""
    if name not in ASSETS:
        raise NotFound(f"no asset {name}", code="not_found")
    return FileResponse(STATIC / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
