"""Search latency with N transcript segments indexed in SQLite FTS5 (the `core.search` code path).

Rows: N segments over N/100 recordings in 10 orgs, ~8–30 words each drawn from a
Zipf-distributed vocabulary (common words are very common, as in speech), with domain
terms and a few planted phrases. Queries go through `core.search.search` (org filter,
deleted-recording join, bm25 ranking, snippets) exactly as `GET /v1/search` runs them.
"""
from __future__ import annotations

import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.transcribe.script import PAIRS, TERMS
from core import db, search

ORGS = [f"org{i}" for i in range(10)]
QUERIES = {
    "common word": [],  # filled from the vocabulary: ranks 16–20 (each in ~1% of segments)
    "domain term": [t.lower() for t in TERMS[:6]],
    "rare word": [],  # ranks 3000–3004
    "phrase": ['"rolling update"', '"database migration"', '"on call"', '"rate limit"'],
    "prefix": ["kube*", "postg*", "migrat*", "deploy*"],
    "role filter": ["kubernetes", "migration", "cluster"],
    "two words": ["kafka consumer", "terraform staging", "grafana alert"],
}


def vocabulary() -> list[str]:
    words = {w.strip(".,?").lower() for q, a in PAIRS for w in (q + " " + a).split()}
    syllables = ["ka", "lo", "mi", "ren", "tas", "vo", "pel", "dun", "sir", "ba", "que", "tor", "an", "el", "is"]
    rng = random.Random(1)
    while len(words) < 20_000:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    head = ["the", "and", "to", "we", "a", "of", "it", "in", "that", "is", "i", "for", "our", "on", "was"]
    return head + [w for w in ordered if w not in head]


def texts(n: int, seed: int = 7) -> list[str]:
    vocab = np.array(vocabulary())
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 31, size=n)
    ids = np.minimum(rng.zipf(1.3, size=int(lengths.sum())) - 1, len(vocab) - 1)
    words = vocab[ids]
    out, pos = [], 0
    planted = ["rolling update", "database migration", "on call", "rate limit", "kafka consumer"]
    for i, k in enumerate(lengths):
        line = " ".join(words[pos:pos + k])
        pos += k
        if i % 97 == 0:
            line += " " + planted[i % len(planted)]
        if i % 41 == 0:
            line = TERMS[i % len(TERMS)] + " " + line
        out.append(line)
    return out


def build(path: Path, n: int) -> tuple[float, float]:
    """Create the schema via core.db/core.search, bulk-insert with executemany, then build
    the FTS5 index in one pass (the sync triggers are re-created afterwards)."""
    engine = db.make_engine(f"sqlite:///{path}")
    db.create_all(engine)  # recording table + search tables (FTS5, triggers)
    engine.dispose()
    gen_started = time.perf_counter()
    rows = texts(n)
    gen_s = time.perf_counter() - gen_started
    started = time.perf_counter()
    con = sqlite3.connect(path)
    for trigger in ("search_doc_ai", "search_doc_ad", "search_doc_au"):
        con.execute(f"DROP TRIGGER {trigger}")
    n_rec = max(1, n // 100)
    con.executemany(
        "INSERT INTO recording (id, org, client_key, source, layout, title, status, created_by, created_at) "
        "VALUES (?, ?, ?, 'client', 'grid', ?, ?, '', ?)",
        [(f"rec{i:07d}", ORGS[i % len(ORGS)], f"k{i}", f"Interview {i}", "deleted" if i % 50 == 0 else "ready",
          1_700_000_000_000 + i * 60_000) for i in range(n_rec)])
    batch = 50_000
    keys = [search.org_key(o) for o in ORGS]
    for lo in range(0, n, batch):
        con.executemany(
            "INSERT INTO search_doc (segment_key, org, org_key, recording_id, version_id, participant_id, speaker, "
            "role, start_ms, end_ms, recorded_at, text) VALUES (?, ?, ?, ?, 'v1', ?, ?, ?, ?, ?, ?, ?)",
            [(f"s{i}", ORGS[(i // 100) % n_rec % len(ORGS)], keys[(i // 100) % n_rec % len(ORGS)],
              f"rec{(i // 100) % n_rec:07d}", f"p{i % 2}",
              "Candidate" if i % 2 else "Interviewer", "candidate" if i % 2 else "interviewer",
              (i % 100) * 7000, (i % 100) * 7000 + 6000, 1_700_000_000_000 + (i // 100) * 60_000, rows[i])
             for i in range(lo, min(n, lo + batch))])
        con.commit()
    con.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
    con.execute("INSERT INTO search_fts(search_fts) VALUES ('optimize')")
    con.commit()
    con.close()
    engine = db.make_engine(f"sqlite:///{path}")
    search.ensure_schema(engine)  # triggers back
    engine.dispose()
    return gen_s, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(path: Path, rounds: int = 30) -> dict[str, list[float]]:
    engine = db.make_engine(f"sqlite:///{path}")
    rng = random.Random(5)
    times: dict[str, list[float]] = {k: [] for k in QUERIES}
    counts: dict[str, list[int]] = {k: [] for k in QUERIES}
    for kind, qs in QUERIES.items():
        search.search(engine, qs[0], search.Filters(org=ORGS[0]))  # warm the page cache
        for _ in range(rounds):
            q = rng.choice(qs)
            f = search.Filters(org=rng.choice(ORGS), role="candidate" if kind == "role filter" else None)
            started = time.perf_counter()
            hits = search.search(engine, q, f)
            times[kind].append((time.perf_counter() - started) * 1000)
            counts[kind].append(len(hits))
    engine.dispose()
    times["_hits"] = [statistics.mean(c) for c in counts.values()]
    return times


def search_table(n: int) -> list[str]:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        path = Path(tmp) / "search.db"
        vocab = vocabulary()
        QUERIES["common word"][:] = vocab[15:20]
        QUERIES["rare word"][:] = vocab[3000:3005]
        gen_s, build_s = build(path, n)
        size_mb = path.stat().st_size / 2**20
        times = measure(path)
    hits = dict(zip(QUERIES, times.pop("_hits")))
    everything = [t for ts in times.values() for t in ts]
    lines = [
        f"{n:,} segments ({n // 100:,} recordings, 10 orgs, 2% of recordings deleted) in SQLite FTS5; "
        f"text generation {gen_s:.0f} s, executemany load + FTS5 rebuild {build_s:.0f} s, file {size_mb:.0f} MB. "
        f"Each query: one org, top 20 by bm25 then recency, with snippets, through `core.search.search`; "
        f"{len(everything)} queries.",
        "",
        "| query kind | p50 ms | p95 ms | max ms | mean hits returned |",
        "|---|---|---|---|---|",
    ]
    for kind, ts in times.items():
        lines.append(f"| {kind} | {pct(ts, 0.5):.1f} | {pct(ts, 0.95):.1f} | {max(ts):.1f} | {hits[kind]:.1f} |")
    lines.append(f"| **all** | **{pct(everything, 0.5):.1f}** | **{pct(everything, 0.95):.1f}** | "
                 f"{max(everything):.1f} | |")
    lines += ["", f"Ranking considers at most the newest {search.RANK_CAP:,} matches of the org "
              f"(`core.search.RANK_CAP`). Machine load average (1 min) before/after: {load_before:.1f} / "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."]
    return lines
