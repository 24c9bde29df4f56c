"""Transcript search on SQLite FTS5 and Postgres tsvector: core.search and GET /v1/search."""
from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from core import db, search
from core.db import session_scope
from core.errors import InvalidInput
from core.models import Recording
from core.search import Filters, Term, parse_query, to_fts5, to_tsquery
from tests.review_api.conftest import add_recording, index_lines

DAY = 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z


# ---------------------------------------------------------------- pure query parsing

def test_parse_query_terms_phrases_prefix_negation_or() -> None:
    groups = parse_query('kube* "Rolling  Update" -helm OR terraform')
    assert groups == [[Term(("kube",), prefix=True), Term(("rolling", "update")), Term(("helm",), negated=True)],
                      [Term(("terraform",))]]
    assert to_fts5(groups) == '("kube" * AND "rolling update" NOT "helm") OR ("terraform")'
    assert to_tsquery(groups) == "(('kube':*) & ('rolling' <-> 'update') & !('helm')) | (('terraform'))"


def test_parse_query_cannot_inject_operators() -> None:
    groups = parse_query("""kube'); DROP TABLE x; -- NEAR("a" b)""")
    fts = to_fts5(groups)
    assert "'" not in fts and ";" not in fts and "DROP" not in fts
    assert all(w.isalnum() for g in groups for t in g for w in t.words)


@pytest.mark.parametrize("q", ["", "   ", "-only -negative", '""', "*** ---"])
def test_empty_queries_are_bad_input(q: str) -> None:
    with pytest.raises(InvalidInput):
        parse_query(q)


# ---------------------------------------------------------------- both databases

@pytest.fixture
def engine(db_url: str) -> Engine:
    eng = db.make_engine(db_url)
    db.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def corpus(engine: Engine) -> Engine:
    old = add_recording(engine, "rec_old", started_at=T0)
    new = add_recording(engine, "rec_new", started_at=T0 + 30 * DAY)
    other = add_recording(engine, "rec_other", org="globex", started_at=T0)
    index_lines(engine, old, [
        ("Alice", "interviewer", 1000, "Tell me about your Kubernetes experience."),
        ("Bob", "candidate", 5000, "I ran Kubernetes clusters and did a rolling update every week."),
        ("Bob", "candidate", 12000, "Updates were rolling out slowly; kubectl was fine."),
        ("Alice", "interviewer", 20000, "What about PostgreSQL <replication>?"),
    ])
    index_lines(engine, new, [
        ("Carol", "candidate", 3000, "We migrated PostgreSQL with zero downtime."),
        ("Dan", "interviewer", 9000, "Have you used Kubernetes operators?"),
        ("Carol", "candidate", 15000, "I ran Kubernetes clusters and did a rolling update every week."),
    ])
    index_lines(engine, other, [("Eve", "candidate", 1000, "Kubernetes rolling update at globex.")])
    return engine


def found(engine: Engine, q: str, **kw) -> list[tuple[str, int]]:
    return [(h.recording_id, h.start_ms) for h in search.search(engine, q, Filters(org="acme", **kw))]


def test_phrase_query_needs_the_words_in_order(corpus: Engine) -> None:
    assert found(corpus, '"rolling update"') == [("rec_new", 15000), ("rec_old", 5000)]
    assert ("rec_old", 12000) in found(corpus, "rolling update")  # as words: any order


def test_prefix_query(corpus: Engine) -> None:
    hits = found(corpus, "kube*")
    assert ("rec_old", 12000) in hits  # kubectl
    assert {("rec_old", 1000), ("rec_old", 5000), ("rec_new", 9000), ("rec_new", 15000)} <= set(hits)
    assert ("rec_old", 12000) not in found(corpus, "kubernetes")


def test_role_filter(corpus: Engine) -> None:
    assert found(corpus, "kubernetes", role="candidate") == [("rec_new", 15000), ("rec_old", 5000)]
    assert {r for r, _ in found(corpus, "kubernetes", role="interviewer")} == {"rec_old", "rec_new"}


def test_org_isolation(corpus: Engine) -> None:
    assert all(r != "rec_other" for r, _ in found(corpus, "kubernetes"))
    other = search.search(corpus, "kubernetes", Filters(org="globex"))
    assert [h.recording_id for h in other] == ["rec_other"]


def test_ranking_is_relevance_then_recency(corpus: Engine) -> None:
    # the same sentence in two interviews: the newer one first
    assert found(corpus, '"ran kubernetes clusters"')[:2] == [("rec_new", 15000), ("rec_old", 5000)]
    # a segment about the query beats a passing mention
    hits = found(corpus, "postgresql zero downtime")
    assert hits == [("rec_new", 3000)]
    assert found(corpus, "postgresql")[0] in {("rec_new", 3000), ("rec_old", 20000)}


def test_date_and_recording_filters(corpus: Engine) -> None:
    assert {r for r, _ in found(corpus, "kubernetes", from_ms=T0 + DAY)} == {"rec_new"}
    assert {r for r, _ in found(corpus, "kubernetes", to_ms=T0 + DAY)} == {"rec_old"}
    assert {r for r, _ in found(corpus, "kubernetes", recording_id="rec_old")} == {"rec_old"}


def test_snippet_is_escaped_and_highlighted_with_a_deep_link(corpus: Engine) -> None:
    (hit,) = search.search(corpus, "replication", Filters(org="acme"))
    assert "<mark>replication</mark>" in hit.snippet and "&lt;" in hit.snippet
    assert hit.link == "/review/rec_old#t=20.0" and hit.speaker == "Alice" and hit.role == "interviewer"


def test_deleted_recordings_disappear(corpus: Engine) -> None:
    with session_scope(corpus) as s:
        s.get(Recording, "rec_new").status = "deleted"
    assert {r for r, _ in found(corpus, "kubernetes")} == {"rec_old"}
    assert search.unindex_recording(corpus, "rec_old") == 4
    assert found(corpus, "kubernetes") == []


def test_reindexing_replaces_a_recordings_rows(corpus: Engine) -> None:
    rec = Recording(id="rec_old", org="acme", client_key="x", started_at_ms=T0)
    index_lines(corpus, rec, [("Bob", "candidate", 0, "Only Terraform now.")])
    assert found(corpus, "terraform") == [("rec_old", 0)]
    assert ("rec_old", 5000) not in found(corpus, "kubernetes")


# ---------------------------------------------------------------- HTTP

@pytest.fixture
def api_corpus(api):
    engine = api.app.state.engine
    rec = add_recording(engine, "rec_a", started_at=T0, title="Backend interview")
    index_lines(engine, rec, [("Alice", "interviewer", 1500, "Describe a Kubernetes incident."),
                              ("Bob", "candidate", 64300, "Our Kubernetes upgrade broke DNS.")])
    other = add_recording(engine, "rec_b", org="globex", started_at=T0)
    index_lines(engine, other, [("Eve", "candidate", 0, "Kubernetes at globex.")])
    return api


def test_search_endpoint(api_corpus, bearer) -> None:
    r = api_corpus.get("/v1/search", params={"q": "kube*", "role": "candidate"}, headers=bearer())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 1
    hit = body["hits"][0]
    assert hit["recording_id"] == "rec_a" and hit["speaker"] == "Bob" and hit["role"] == "candidate"
    assert hit["link"] == "/review/rec_a#t=64.3" and hit["start"] == 64.3
    assert "<mark>Kubernetes</mark>" in hit["snippet"] and hit["recording_title"] == "Backend interview"


def test_search_endpoint_org_isolation_and_filters(api_corpus, bearer) -> None:
    r = api_corpus.get("/v1/search", params={"q": "kubernetes"}, headers=bearer(org="globex"))
    assert [h["recording_id"] for h in r.json()["hits"]] == ["rec_b"]
    r = api_corpus.get("/v1/search", params={"q": "kubernetes", "from": "2025-01-02"}, headers=bearer())
    assert r.json()["hits"] == []
    r = api_corpus.get("/v1/search", params={"q": "kubernetes", "to": "2025-01-02T00:00:00Z"}, headers=bearer())
    assert r.json()["count"] == 2


def test_search_endpoint_errors(api_corpus, bearer) -> None:
    assert api_corpus.get("/v1/search", params={"q": "x"}).status_code == 401
    r = api_corpus.get("/v1/search", params={"q": "kubernetes"}, headers=bearer(role="candidate"))
    assert r.status_code == 403 and r.json()["code"] == "wrong_role"
    r = api_corpus.get("/v1/search", params={"q": '""'}, headers=bearer())
    assert r.status_code == 400 and r.json()["code"] == "empty_query"
    r = api_corpus.get("/v1/search", params={"q": "x", "from": "last tuesday"}, headers=bearer())
    assert r.status_code == 400 and r.json()["code"] == "bad_from"
    assert api_corpus.get("/v1/search", headers=bearer()).status_code == 400


def test_sqlite_ranks_only_the_newest_matches_of_a_very_common_word(sqlite_url, monkeypatch) -> None:
    eng = db.make_engine(sqlite_url)
    db.create_all(eng)
    monkeypatch.setattr(search, "RANK_CAP", 3)
    a = add_recording(eng, "rec_a", started_at=T0)
    b = add_recording(eng, "rec_b", org="globex", started_at=T0 + DAY)
    index_lines(eng, a, [("Bob", "candidate", i * 1000, f"cluster number {i}") for i in range(6)])
    index_lines(eng, b, [("Eve", "candidate", i * 1000, f"cluster {i}") for i in range(4)])
    # 10 matches > cap: the org is matched inside FTS5 and the newest 3 of *this org* ranked
    assert sorted(h.start_ms for h in search.search(eng, "cluster", Filters(org="acme"))) == [3000, 4000, 5000]
    assert sorted(h.start_ms for h in search.search(eng, "cluster", Filters(org="globex"))) == [1000, 2000, 3000]
    # under the cap: every match is ranked
    few = search.search(eng, '"number 0" OR "number 1" OR "number 2"', Filters(org="acme"))
    assert sorted(h.start_ms for h in few) == [0, 1000, 2000]
    eng.dispose()
