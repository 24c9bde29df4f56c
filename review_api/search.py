"""`GET /v1/search`: full-text search over the caller's org's transcripts, with deep links."""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Optional

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from core import audit, search
from core.errors import InvalidInput
from core.limits import INT_DIGITS, MAX_EPOCH_MS, QUERY_CHARS
from core.http import CurrentPrincipal
from core.access import Action, require_in_org, visible_sql
from core.db import session_scope
from core.ratelimit import charge
from review_api.deps import EngineDep

router = APIRouter(prefix="/v1", tags=["search"])


class HitPublic(BaseModel):
    recording_id: str
    recording_title: str
    speaker: str
    participant_id: str
    role: str
    start_ms: int
    end_ms: int
    start: float
    recorded_at: int
    score: float
    snippet: str  # HTML-escaped text, matches wrapped in <mark>
    link: str  # /review/{recording_id}#t=12.3 (&hl=12300-12800,… : the matched words, ms)
    segment_start_ms: int  # the segment holding the match; start_ms is the first matched word
    matches: list[list[int]]  # [start_ms, end_ms] of each matched word (phrase: its words)


class SearchResults(BaseModel):
    query: str
    count: int
    offset: int
    hits: list[HitPublic]


def parse_when(value: Optional[str], name: str) -> Optional[int]:
    """Epoch ms, an ISO date (2025-01-31) or an ISO datetime → epoch ms (UTC if naive)."""
    if value is None or value == "":
        return None
    if value.isascii() and value.isdigit():  # not '١٢٣' or '²'
        if len(value) > INT_DIGITS:
            raise InvalidInput(f"{name} is too large for epoch ms", code=f"bad_{name}")
        return min(int(value), MAX_EPOCH_MS)
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            moment = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidInput(f"{name} must be epoch ms or an ISO date/datetime", code=f"bad_{name}") from None
    return max(0, min(int(moment.timestamp() * 1000), MAX_EPOCH_MS))  # no recording is outside 1970-2099


@router.get("/search", response_model=SearchResults)
def search_transcripts(
    principal: CurrentPrincipal, engine: EngineDep, request: Request,
    q: str = Query(..., min_length=1, max_length=QUERY_CHARS, description='words, "phrases", prefix*, -exclude, OR'),
    role: Optional[str] = Query(None, max_length=32, description="speaker role, e.g. candidate"),
    from_: Optional[str] = Query(None, alias="from", max_length=64,
                                 description="recordings started at/after (ISO or ms)"),
    to: Optional[str] = Query(None, max_length=64, description="recordings started before (ISO or ms)"),
    recording: Optional[str] = Query(None, max_length=64, description="only this recording"),
    limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0, le=10_000),
) -> SearchResults:
    """What was said, across the caller's org: best match first, then the newest interview."""
    with session_scope(engine) as s:
        org = require_in_org(s, principal, Action.SEARCH)
        access_sql, access_params = visible_sql(principal, Action.SEARCH, org)
    charge(request.app.state, principal, "search")
    filters = search.Filters(org=principal.org, role=role or None, recording_id=recording or None,
                             from_ms=parse_when(from_, "from"), to_ms=parse_when(to, "to"),
                             limit=limit, offset=offset, access_sql=access_sql,
                             access_params=tuple(access_params.items()))
    hits = search.search(engine, q, filters)
    audit.record(engine, org=principal.org, action=audit.SEARCH, actor=principal, object_type="org",
                 object_id=principal.org, detail={
                     "query": q, "role": role, "recording": recording, "from": filters.from_ms, "to": filters.to_ms,
                     "limit": limit, "offset": offset, "hits": len(hits),
                     "recordings": sorted({h.recording_id for h in hits})})
    return SearchResults(query=q, count=len(hits), offset=offset, hits=[
        HitPublic(recording_id=h.recording_id, recording_title=h.recording_title, speaker=h.speaker,
                  participant_id=h.participant_id, role=h.role, start_ms=h.start_ms, end_ms=h.end_ms,
                  start=round(h.start_ms / 1000, 1), recorded_at=h.recorded_at, score=h.score,
                  snippet=h.snippet, link=h.link, segment_start_ms=h.segment_start_ms,
                  matches=[list(m) for m in h.matches]) for h in hits])
