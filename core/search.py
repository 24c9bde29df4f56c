"""Full-text search over transcript segments: SQLite FTS5 locally, Postgres tsvector + GIN.

Pure SQL, shared by workers (write: `index_recording`, `unindex_recording`) and the
review API (read: `search`). One row per visible segment of a recording's *current*
transcript version in `search_doc`; SQLite mirrors it into the FTS5 table `search_fts`
with triggers, Postgres keeps a generated `tsv` column under a GIN index.

Query syntax (`parse_query`): words (all must match), "exact phrases", prefixes (`kube*`),
`-excluded` words, and `OR` between groups. Results only ever come from the caller's org
and from recordings that are not deleted (status "deleted" or no `recording` row).
"""
from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

from sqlalchemy import bindparam, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from core.errors import InvalidInput

MARK_OPEN, MARK_CLOSE = "\x02", "\x03"
_TOKEN = re.compile(r"[^\W_]+")
_QUERY_PART = re.compile(r'(-?)"([^"]*)"(\*?)|(\S+)')
_COLUMNS = ("segment_key", "org", "org_key", "recording_id", "version_id", "participant_id", "speaker", "role",
            "start_ms", "end_ms", "recorded_at", "text")
# Ranking scores every match; past this many matches SQLite ranks only the newest ones
# (by index order), so a query for a very common word stays fast at millions of rows.
RANK_CAP = 2_000

_SQLITE_DDL = [
    """CREATE TABLE IF NOT EXISTS search_doc (
        id INTEGER PRIMARY KEY, segment_key TEXT NOT NULL UNIQUE, org TEXT NOT NULL, org_key TEXT NOT NULL,
        recording_id TEXT NOT NULL, version_id TEXT NOT NULL DEFAULT '', participant_id TEXT NOT NULL DEFAULT '',
        speaker TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT '', start_ms INTEGER NOT NULL,
        end_ms INTEGER NOT NULL, recorded_at INTEGER NOT NULL DEFAULT 0, text TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_recording ON search_doc (recording_id)",
    # org_key (one opaque token per org) is indexed too, so the org restricts the match
    # inside FTS5 instead of after it; the exact `org = :org` check is still applied.
    """CREATE VIRTUAL TABLE IF NOT EXISTS search_fts USING fts5(text, org_key, content='search_doc',
        content_rowid='id', tokenize='porter unicode61 remove_diacritics 2', prefix='2 3')""",
    """CREATE TRIGGER IF NOT EXISTS search_doc_ai AFTER INSERT ON search_doc BEGIN
        INSERT INTO search_fts(rowid, text, org_key) VALUES (new.id, new.text, new.org_key); END""",
    """CREATE TRIGGER IF NOT EXISTS search_doc_ad AFTER DELETE ON search_doc BEGIN
        INSERT INTO search_fts(search_fts, rowid, text, org_key) VALUES ('delete', old.id, old.text, old.org_key);
        END""",
    """CREATE TRIGGER IF NOT EXISTS search_doc_au AFTER UPDATE ON search_doc BEGIN
        INSERT INTO search_fts(search_fts, rowid, text, org_key) VALUES ('delete', old.id, old.text, old.org_key);
        INSERT INTO search_fts(rowid, text, org_key) VALUES (new.id, new.text, new.org_key); END""",
]
_POSTGRES_DDL = [
    """CREATE TABLE IF NOT EXISTS search_doc (
        id BIGSERIAL PRIMARY KEY, segment_key TEXT NOT NULL UNIQUE, org TEXT NOT NULL, org_key TEXT NOT NULL,
        recording_id TEXT NOT NULL, version_id TEXT NOT NULL DEFAULT '', participant_id TEXT NOT NULL DEFAULT '',
        speaker TEXT NOT NULL DEFAULT '', role TEXT NOT NULL DEFAULT '', start_ms BIGINT NOT NULL,
        end_ms BIGINT NOT NULL, recorded_at BIGINT NOT NULL DEFAULT 0, text TEXT NOT NULL,
        tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', translate(text, '<>', '‹›'))) STORED)""",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_tsv ON search_doc USING GIN (tsv)",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_recording ON search_doc (recording_id)",
    "CREATE INDEX IF NOT EXISTS ix_search_doc_org ON search_doc (org, recorded_at)",
]


# ---------------------------------------------------------------- schema

def _dialect(bind: Connection | Engine) -> str:
    return bind.dialect.name


def create_schema(conn: Connection) -> None:
    """Create the index tables if missing (idempotent). `core.db.create_all` runs it (the
    transcript models register it), so API and worker start-up create the index."""
    for ddl in _SQLITE_DDL if _dialect(conn) == "sqlite" else _POSTGRES_DDL:
        conn.exec_driver_sql(ddl)


def ensure_schema(engine: Engine) -> None:
    with engine.begin() as conn:
        create_schema(conn)


def register_schema(metadata: Any) -> None:
    """Make `metadata.create_all` also create the search tables."""
    if not event.contains(metadata, "after_create", _after_create):
        event.listen(metadata, "after_create", _after_create)


def _after_create(_target: Any, connection: Connection, **_kw: Any) -> None:
    create_schema(connection)


# ---------------------------------------------------------------- query parsing (pure)

@dataclass(frozen=True)
class Term:
    """Words that must appear in this order (one word, or a phrase); optional prefix match."""

    words: tuple[str, ...]
    prefix: bool = False
    negated: bool = False


def tokens(s: str) -> list[str]:
    return _TOKEN.findall(unicodedata.normalize("NFKC", s).lower())


def parse_query(q: str) -> list[list[Term]]:
    """`kube* "rolling update" -helm OR terraform` → OR-groups of AND-ed terms."""
    groups: list[list[Term]] = [[]]
    for m in _QUERY_PART.finditer(q or ""):
        neg, phrase, star, bare = m.group(1), m.group(2), m.group(3), m.group(4)
        if bare == "OR":
            groups.append([])
            continue
        if bare is not None:
            neg, star = ("-" if bare.startswith("-") and len(bare) > 1 else ""), ("*" if bare.endswith("*") else "")
            phrase = bare.lstrip("-").rstrip("*")
        words = tuple(tokens(phrase))
        if words:
            groups[-1].append(Term(words, prefix=bool(star), negated=bool(neg)))
    usable = [g for g in groups if any(not t.negated for t in g)]
    if not usable:
        raise InvalidInput("the search query has no words to look for", code="empty_query")
    return usable


def to_fts5(groups: Sequence[Sequence[Term]]) -> str:
    """FTS5 MATCH expression (every word quoted: no operator injection)."""
    def term(t: Term) -> str:
        return f'"{" ".join(t.words)}"' + (" *" if t.prefix else "")

    parts = []
    for g in groups:
        expr = " AND ".join(term(t) for t in g if not t.negated)
        expr += "".join(f" NOT {term(t)}" for t in g if t.negated)
        parts.append(f"({expr})")
    return " OR ".join(parts)


def to_tsquery(groups: Sequence[Sequence[Term]]) -> str:
    """Input for Postgres `to_tsquery('english', …)` (words quoted; phrases use <->)."""
    def term(t: Term) -> str:
        ws = [f"'{w}'" for w in t.words]
        if t.prefix:
            ws[-1] += ":*"
        body = " <-> ".join(ws)
        return f"!({body})" if t.negated else f"({body})"

    return " | ".join("(" + " & ".join(term(t) for t in g) + ")" for g in groups)


def org_key(org: str) -> str:
    """One alphanumeric token standing for an org (what FTS5 indexes next to the text)."""
    return "o" + hashlib.sha256(org.encode()).hexdigest()[:24]


def to_fts5_in_org(groups: Sequence[Sequence[Term]], org: str) -> str:
    return f'org_key : "{org_key(org)}" AND text : ({to_fts5(groups)})'


def highlight(snippet: str) -> str:
    """HTML-escape a snippet and turn the match markers into <mark> tags."""
    # Postgres' parser reads "<word>" as an XML tag (never indexed): it sees ‹word› instead.
    snippet = snippet.replace("‹", "<").replace("›", ">")
    return html.escape(snippet, quote=False).replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>")


# ---------------------------------------------------------------- matched words (pure)

_SUFFIXES = ("ing", "ed", "es", "s")
SNIPPET_BEFORE, SNIPPET_AFTER = 8, 16  # words around the first match in a snippet


def stem(token: str) -> str:
    """A crude English stem, enough to find which word of a segment the index matched
    (the index stems with porter/snowball: "updates" and "update" are one term)."""
    for suffix in _SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            token = token[:-len(suffix)]
            break
    return token[:-1] if token.endswith("e") and len(token) > 3 else token


def _term_at(tokens_: Sequence[str], k: int, term: Term) -> bool:
    if k + len(term.words) > len(tokens_):
        return False
    for j, want in enumerate(term.words):
        got = tokens_[k + j]
        last = j == len(term.words) - 1
        if not (got == want or stem(got) == stem(want) or (term.prefix and last and got.startswith(want))):
            return False
    return True


def matched_words(words: Sequence[str], groups: Sequence[Sequence[Term]]) -> tuple[int | None, list[tuple[int, int]]]:
    """Which of a segment's words a query matched: (index of the first matched word — a
    phrase's first word — or None, and every match as [first, last] word indices)."""
    toks: list[str] = []
    owner: list[int] = []
    for i, w in enumerate(words):
        for t in tokens(w):
            toks.append(t)
            owner.append(i)
    best: tuple[int | None, list[tuple[int, int]]] = (None, [])
    for group in groups:
        spans: list[tuple[int, int]] = []
        for term in (t for t in group if not t.negated):
            found = [(owner[k], owner[k + len(term.words) - 1]) for k in range(len(toks)) if _term_at(toks, k, term)]
            if not found:
                spans = []
                break
            spans += found
        if spans:
            first = min(a for a, _ in spans)
            if best[0] is None or first < best[0]:
                best = (first, sorted(set(spans)))
    return best


def word_snippet(words: Sequence[str], spans: Sequence[tuple[int, int]]) -> str:
    """Snippet (HTML, like `highlight`) centred on the first match, matches marked."""
    first = spans[0][0]
    lo, hi = max(0, first - SNIPPET_BEFORE), min(len(words), first + SNIPPET_AFTER)
    marked = {i for a, b in spans for i in range(a, b + 1)}
    parts = [(MARK_OPEN + w + MARK_CLOSE) if i in marked else w for i, w in enumerate(words[lo:hi], lo)]
    return highlight(("… " if lo else "") + " ".join(parts) + (" …" if hi < len(words) else ""))


# ---------------------------------------------------------------- write side

@dataclass(frozen=True)
class SearchDoc:
    segment_key: str
    recording_id: str
    version_id: str
    participant_id: str
    speaker: str
    role: str
    start_ms: int
    end_ms: int
    text: str


def index_recording(engine: Engine, org: str, recording_id: str, recorded_at: int,
                    docs: Iterable[SearchDoc]) -> int:
    """Replace everything indexed for a recording with `docs`, in one transaction."""
    rows = [{"segment_key": d.segment_key, "org": org, "org_key": org_key(org), "recording_id": recording_id,
             "version_id": d.version_id, "participant_id": d.participant_id, "speaker": d.speaker, "role": d.role,
             "start_ms": d.start_ms, "end_ms": d.end_ms, "recorded_at": recorded_at, "text": d.text} for d in docs]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM search_doc WHERE recording_id = :rid"), {"rid": recording_id})
        if rows:
            conn.execute(text(f"INSERT INTO search_doc ({', '.join(_COLUMNS)}) "
                              f"VALUES ({', '.join(':' + c for c in _COLUMNS)})"), rows)
    return len(rows)


def segment_key(version_id: str, row_id: int) -> str:
    """The search row of a transcript segment row (its words are found again from it)."""
    return f"{version_id}:{row_id}"


def unindex_recording(engine: Engine, recording_id: str) -> int:
    """Remove a recording from search (on deletion/erasure). Returns rows removed."""
    with engine.begin() as conn:
        result = conn.execute(text("DELETE FROM search_doc WHERE recording_id = :rid"), {"rid": recording_id})
    return result.rowcount or 0


def purge_transcripts(engine: Engine, recording_id: str) -> None:
    """Erase a recording's transcripts (every version) and its search rows."""
    unindex_recording(engine, recording_id)
    with engine.begin() as conn:
        for table in ("transcriptsegment", "transcripttrackstate"):
            conn.execute(text(f"DELETE FROM {table} WHERE version_id IN "
                              "(SELECT id FROM transcriptversion WHERE recording_id = :rid)"), {"rid": recording_id})
        conn.execute(text("DELETE FROM transcriptversion WHERE recording_id = :rid"), {"rid": recording_id})


# ---------------------------------------------------------------- read side

@dataclass(frozen=True)
class Hit:
    recording_id: str
    recording_title: str
    segment_key: str
    participant_id: str
    speaker: str
    role: str
    start_ms: int
    end_ms: int
    recorded_at: int
    score: float
    snippet: str  # HTML: escaped text with <mark>…</mark> around matches
    segment_start_ms: int = 0  # the segment holding the match (start_ms is the matched word's)
    matches: tuple[tuple[int, int], ...] = ()  # [start_ms, end_ms] of each matched word run

    @property
    def link(self) -> str:
        """The review page at the first matched word, the matched words highlighted there."""
        hl = ",".join(f"{a}-{b}" for a, b in self.matches)
        return f"/review/{self.recording_id}#t={self.start_ms / 1000:.1f}" + (f"&hl={hl}" if hl else "")


@dataclass(frozen=True)
class Filters:
    org: str
    role: str | None = None
    recording_id: str | None = None
    from_ms: int | None = None  # recordings started at or after
    to_ms: int | None = None  # recordings started before
    limit: int = 20
    offset: int = 0
    # the caller's visibility on `recording AS r` (core.access.visible_sql): applied in SQL
    access_sql: str = ""
    access_params: tuple[tuple[str, Any], ...] = ()


def _where(f: Filters) -> tuple[str, dict[str, Any]]:
    clauses, params = ["d.org = :org", "r.status != 'deleted'"], {"org": f.org}
    for column, key, op in (("role", "role", "="), ("recording_id", "recording_id", "="),
                            ("recorded_at", "from_ms", ">="), ("recorded_at", "to_ms", "<")):
        value = getattr(f, key)
        if value is not None:
            clauses.append(f"d.{column} {op} :{key}")
            params[key] = value
    if f.access_sql:
        clauses.append(f"({f.access_sql})")
        params.update(dict(f.access_params))
    params.update(limit=max(1, min(f.limit, 100)), offset=max(0, f.offset))
    return " AND ".join(clauses), params


_SELECT = ("d.id, d.segment_key, d.recording_id, d.participant_id, d.speaker, d.role, d.start_ms, "
           "d.end_ms, d.recorded_at, d.text, r.title")


def _sqlite_sql(where: str, many: bool) -> str:
    """Rank by bm25 on the text column, snippets only for the page of hits.

    Few matches: match the text, filter by org after. Many matches (a common word): the
    org token is matched inside FTS5 too, and only the newest RANK_CAP matches are ranked.
    """
    cap = ("AND search_fts.rowid > coalesce((SELECT rowid FROM search_fts WHERE search_fts MATCH :q "
           "ORDER BY rowid DESC LIMIT 1 OFFSET :cap), 0)") if many else ""
    return f"""
        WITH top AS (
            SELECT {_SELECT}, bm25(search_fts, 1.0, 0.0) AS score FROM search_fts
            JOIN search_doc d ON d.id = search_fts.rowid JOIN recording r ON r.id = d.recording_id
            WHERE search_fts MATCH :q {cap} AND {where}
            ORDER BY round(bm25(search_fts, 1.0, 0.0), 1), d.recorded_at DESC, d.start_ms
            LIMIT :limit OFFSET :offset)
        SELECT top.*, snippet(search_fts, 0, :mo, :mc, '…', 24) AS snip
        FROM top CROSS JOIN search_fts ON search_fts.rowid = top.id
        WHERE search_fts MATCH :q
        ORDER BY round(top.score, 1), top.recorded_at DESC, top.start_ms"""


def _sqlite_many(conn: Connection, match: str) -> bool:
    """Does the text query match more than RANK_CAP segments (all orgs)? Bounded cost."""
    sql = "SELECT count(*) FROM (SELECT 1 FROM search_fts WHERE search_fts MATCH :q LIMIT :n)"
    return conn.execute(text(sql), {"q": match, "n": RANK_CAP + 1}).scalar_one() > RANK_CAP


def _postgres_sql(where: str) -> str:
    return f"""
        WITH q AS (SELECT to_tsquery('english', :q) AS query),
        top AS (
            SELECT {_SELECT}, ts_rank_cd(d.tsv, q.query, 32) AS score
            FROM search_doc d JOIN recording r ON r.id = d.recording_id, q
            WHERE d.tsv @@ q.query AND {where}
            ORDER BY round(ts_rank_cd(d.tsv, q.query, 32)::numeric, 2) DESC, d.recorded_at DESC, d.start_ms
            LIMIT :limit OFFSET :offset)
        SELECT top.*, ts_headline('english', translate(top.text, '<>', '‹›'), q.query,
            'StartSel="' || :mo || '", StopSel="' || :mc || '", MaxWords=35, MinWords=15') AS snip
        FROM top, q
        ORDER BY round(top.score::numeric, 2) DESC, top.recorded_at DESC, top.start_ms"""


def search(engine: Engine, query: str, filters: Filters) -> list[Hit]:
    """Segments of the caller's org matching `query`: by relevance, then newest first."""
    groups = parse_query(query)
    where, params = _where(filters)
    params.update(mo=MARK_OPEN, mc=MARK_CLOSE, cap=RANK_CAP)
    with engine.connect() as conn:
        if _dialect(engine) == "sqlite":
            match = f"text : ({to_fts5(groups)})"
            many = _sqlite_many(conn, match)
            params["q"] = to_fts5_in_org(groups, filters.org) if many else match
            sql = _sqlite_sql(where, many)
        else:
            params["q"], sql = to_tsquery(groups), _postgres_sql(where)
        rows = conn.execute(text(sql), params).mappings().all()
        words = _segment_words(conn, [r["segment_key"] for r in rows])
    return [_hit(r, words.get(r["segment_key"]), groups) for r in rows]


def _hit(r: Any, words: list | None, groups: Sequence[Sequence[Term]]) -> Hit:
    """A result row as a hit pointing at its first matched word (found in the segment's
    words), or at the segment when the words are not known."""
    start, end = int(r["start_ms"]), int(r["end_ms"])
    hit = Hit(recording_id=r["recording_id"], recording_title=r["title"] or "", segment_key=r["segment_key"],
              participant_id=r["participant_id"], speaker=r["speaker"], role=r["role"], start_ms=start, end_ms=end,
              recorded_at=int(r["recorded_at"]), score=round(abs(float(r["score"])), 4),
              snippet=highlight(r["snip"] or r["text"]), segment_start_ms=start)
    texts = [str(w[0]) for w in words or ()]
    first, spans = matched_words(texts, groups) if texts else (None, [])
    if first is None:
        return hit
    return replace(hit, start_ms=int(words[first][1]), snippet=word_snippet(texts, spans),
                   matches=tuple((int(words[a][1]), int(words[b][2])) for a, b in spans))


_SEGMENT_KEY = re.compile(r"^(.+):(\d+)$")


def _segment_words(conn: Connection, keys_: Sequence[str]) -> dict[str, list]:
    """Words with times ([[word, start_ms, end_ms, prob], …]) of the transcript segments
    behind these search rows (`segment_key`); rows with no segment are left out."""
    wanted = {int(m.group(2)): (m.group(1), k) for k in keys_ if (m := _SEGMENT_KEY.match(k))}
    if not wanted:
        return {}
    sql = text("SELECT id, version_id, words FROM transcriptsegment WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True))
    try:
        rows = conn.execute(sql, {"ids": list(wanted)}).all()
    except DBAPIError:  # an index without the transcript tables (a bare search database)
        return {}
    out = {}
    for row_id, version_id, words in rows:
        version, key = wanted[int(row_id)]
        if version == version_id and words:
            out[key] = json.loads(words) if isinstance(words, str) else words
    return out
