"""Review web pages served by the API: `/review/{id}` (player + transcript) and `/search`.

Plain HTML + JS from `review_api/static/` (no build step, nothing loaded from elsewhere).
The pages are static shells: they call the JSON API with the user's API token, which they
take from `?token=` (then drop from the address bar) or from localStorage, or ask for
in a small form. So serving the HTML needs no token; every byte of data does.

    /recordings            the landing page: my interviews, then the rest I may see
    /review/{id}#t=123.4   seek to 123.4 s on load (search results link here)
    /search?q=…&role=…     transcript search with highlighted snippets
    /call/{room}?token=…   the live call (join token): consent, video tiles, recording
    /compliance            retention policy, legal holds, preview, runs, receipts, audit chain
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
          "recordings.js": "text/javascript", "compliance.js": "text/javascript", "call.js": "text/javascript",
          "quality_sampler.js": "text/javascript", "review.css": "text/css"}


def content_security_policy(public_url: str = "", sockets: str = "") -> str:
    """Only this origin (and the configured public URL) may serve scripts, data and media;
    `sockets` adds WebSocket origins to `connect-src` (the call page's signaling)."""
    origin = ""
    if public_url:
        parts = urlsplit(public_url)
        origin = f" {parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    extra = f" {sockets}" if sockets else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src 'self' blob: data:{origin}; media-src 'self' blob:{origin}; "
            f"connect-src 'self'{origin}{extra}; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def socket_origins(request: Request) -> str:
    """`ws(s)://` of this host and of the public URL (older browsers do not match them to 'self')."""
    out = []
    for base in (str(request.base_url), request.app.state.settings.public_url):
        parts = urlsplit(base)
        if parts.scheme in ("http", "https") and parts.netloc:
            scheme = "wss" if parts.scheme == "https" else "ws"
            if f"{scheme}://{parts.netloc}" not in out:
                out.append(f"{scheme}://{parts.netloc}")
    return " ".join(out)


def _page(request: Request, name: str, sockets: str = "") -> FileResponse:
    settings = request.app.state.settings
    headers = {"Content-Security-Policy": content_security_policy(settings.public_url, sockets),
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


@router.get("/recordings")
def recordings_page(request: Request) -> FileResponse:
    """The landing page: my interviews first, then what is shared with me; links to review."""
    return _page(request, "recordings.html")


@router.get("/compliance")
def compliance_page(request: Request) -> FileResponse:
    """Retention for compliance: policy, legal holds, the next preview, runs, receipts, audit chain."""
    return _page(request, "compliance.html")


@router.get("/call/{room_id}")
def call_page(room_id: str, request: Request) -> FileResponse:
    """Hold the interview: recording consent, camera/microphone, video tiles, recovery."""
    keys.check_id(room_id, "room_id")
    return _page(request, "call.html", sockets=socket_origins(request))


@router.get("/review")
def review_index(request: Request) -> RedirectResponse:
    """`/review` without an id: the interviews list."""
    query = request.url.query
    return RedirectResponse("/recordings" + (f"?{query}" if query else ""), status_code=307)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/recordings", status_code=307)


@router.get("/static/review/{name}")
def review_asset(name: str) -> FileResponse:
    """The pages' scripts and stylesheet (a fixed list: nothing else under the directory)."""
    if name not in ASSETS:
        raise NotFound(f"no asset {name}", code="not_found")
    return FileResponse(STATIC / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
