"""`recorder` command line: api | worker | bot | up | token | transcribe | models | demo | db."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="interview-recorder: record, transcribe and review video interviews.",
                  no_args_is_help=True, add_completion=False)


def _sigterm_as_interrupt() -> None:
    """Turn SIGTERM into KeyboardInterrupt so `finally` blocks stop children."""

    def _raise(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


@app.command()
def api(host: Optional[str] = typer.Option(None, help="bind address (default RECORDER_API_HOST)"),
        port: Optional[int] = typer.Option(None, help="port (default RECORDER_API_PORT)")) -> None:
    """Run the API: rooms + signaling, chunk ingest, review API and pages."""
    import uvicorn

    from core.settings import Settings

    s = Settings()
    uvicorn.run("recorder.app:app_from_env", factory=True, host=host or s.api_host,
                port=port or s.api_port, log_config=None, ws_max_size=256 * 1024, ws_per_message_deflate=False,
                timeout_graceful_shutdown=5)


@app.command()
def worker(processes: Optional[int] = typer.Option(None, help="worker processes (default RECORDER_WORKER_PROCESSES)"),
           threads: Optional[int] = typer.Option(None, help="threads per process (default RECORDER_WORKER_THREADS)"),
           queues: Optional[list[str]] = typer.Option(None, "--queue", help="only these queues (repeatable)")) -> None:
    """Run Dramatiq workers: stitch, composite, transcribe, index, retention."""
    from core.settings import Settings

    s = Settings()
    cmd = [sys.executable, "-m", "dramatiq", "workers.actors", "--processes", str(processes or s.worker_processes),
           "--threads", str(threads or s.worker_threads)]
    for q in queues or []:
        cmd += ["--queues", q]
    os.execv(sys.executable, cmd)


BOT_HELP = ("Run the recording bot service: joins rooms with recording on and records every track.\n\n"
            "Admission: one bot process records at most RECORDER_BOT_MAX_PARTICIPANTS participants at once "
            "(default 16: the most bench/bot recorded without frame loss in one process, at ~0.033 CPU-s per "
            "media-second per participant; one process is one event loop, about one core). A room that would take a process over its cap is left to another "
            "bot process, or taken by this one on a later retry once its load has dropped; an idle process takes "
            "any room. Run one process per core with --processes.")


@app.command(help=BOT_HELP)
def bot(processes: Optional[int] = typer.Option(None, "--processes", min=1, max=64,
                                                help="bot processes to run, each with its own admission cap "
                                                "(default RECORDER_BOT_PROCESSES; one per core)")) -> None:
    from core.settings import Settings

    n = processes or Settings().bot_processes
    if n == 1:
        from bot.service import run

        run()
        return
    from bot.fleet import run_processes
    from core.logging import configure_logging

    s = Settings()
    configure_logging(s.log_level, s.log_json)
    raise typer.Exit(run_processes(n))


def stack_env(data_dir: Path) -> dict[str, str]:
    """The local stack's generated settings (`recorder up` writes `var/stack.env`)."""
    path = data_dir / "stack.env"
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if k.strip().startswith("RECORDER_")}


@app.command()
def token(org: str = typer.Option("demo", help="organisation id (the local demo's org is `demo`)"),
          role: str = typer.Option("admin", help="admin|compliance|interviewer|assessor|candidate|service|recorder"),
          sub: str = typer.Option("you", help="subject (user or service id)"),
          ttl: int = typer.Option(3600, help="lifetime in seconds"),
          scope: str = typer.Option("api", help="api | upload | join"),
          group: list[str] = typer.Option([], "--group", help="a group the caller belongs to (repeatable)"),
          recording: Optional[str] = typer.Option(None, help="bind to this recording (upload scope)"),
          room: Optional[str] = typer.Option(None, help="bind to this room (join scope)"),
          participant: Optional[str] = typer.Option(None, help="bind to this participant")) -> None:
    """Mint a JWT with the configured secret (for local use and scripts).

    Without RECORDER_JWT_SECRET in the environment it reads the local stack's
    `var/stack.env` (written by `recorder up` / `make demo`), so a token from a new shell
    is accepted by the running stack."""
    from core.auth import mint_token
    from core.settings import Settings

    if "RECORDER_JWT_SECRET" not in os.environ:
        data_dir = Path(os.environ.get("RECORDER_DATA_DIR", "./var"))
        for key, value in stack_env(data_dir).items():
            os.environ.setdefault(key, value)
    s = Settings()
    typer.echo(mint_token(s.jwt_secret, sub=sub, org=org, role=role, ttl_s=ttl, scope=scope, issuer=s.jwt_issuer,
                          recording_id=recording, room_id=room, participant_id=participant,
                          groups=list(group) or None))


@app.command()
def transcribe(recording: str = typer.Argument(..., help="recording id"),
               model: Optional[str] = typer.Option(None, help="CTranslate2 model dir or cached model name "
                                                   "(default RECORDER_WHISPER_MODEL, else the bundled tiny.en)"),
               beam: Optional[int] = typer.Option(None, min=1, max=10, help="beam width (default "
                                                  "RECORDER_WHISPER_BEAM_SIZE)"),
               start_ms: Optional[int] = typer.Option(None, min=0, help="only this span: from (ms on the "
                                                      "recording timeline)"),
               end_ms: Optional[int] = typer.Option(None, min=1, help="only this span: to (ms)"),
               queue: bool = typer.Option(False, "--queue", help="hand it to the workers through Redis "
                                          "instead of running the model in this process"),
               timeout: float = typer.Option(3600, help="give up following it after this many seconds")) -> None:
    """Re-transcribe a recording (or a span of it) into a new transcript version.

    The new version becomes current when done; earlier ones are kept (?version=N).

    Exit code 2: bad request (unknown recording, not processed, bad span, no such model).
    Exit code 1: the transcription failed.
    """
    from rich.console import Console

    from core.errors import InvalidInput, InvalidState, NotFound, RecorderError
    from recorder.retranscribe import Request, run

    console = Console(stderr=True)
    try:
        version = run(Request(recording, model, beam, start_ms, end_ms), queue, timeout, console)
    except RecorderError as exc:
        console.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(2 if isinstance(exc, (InvalidInput, InvalidState, NotFound)) else 1) from None
    if version.status != "final":
        console.print(f"[red]version {version.version} {version.status}[/red]: {version.error or ''}")
        raise typer.Exit(1)
    typer.echo(f"version {version.version} of {recording} is current ({version.model}, "
               f"{version.segment_count} segments, {version.time_taken_ms / 1000:.1f} s)")


@app.command()
def models() -> None:
    """List the whisper models: the configured one (RECORDER_WHISPER_MODEL: a CTranslate2
    directory, e.g. a larger model, or a model in the local cache) and the bundled tiny.en.
    `make model-base` fetches a larger one (Whisper base) into var/models/whisper-base-ct2.

    Exit code 1: the configured model is not available offline (workers would fail).
    """
    from core.settings import get_settings
    from transcribe.model import list_models

    found = list_models(get_settings().whisper_model)
    for m in found:
        state = f"available, {m.size_mb:.0f} MB" if m.available else "NOT AVAILABLE offline"
        typer.echo(f"{m.role:<10}  {m.name}  ({state})\n            {m.path}")
    if not found[0].available:
        raise typer.Exit(1)


@app.command()
def up(data_dir: Path = typer.Option(Path("./var"), help="where services keep data and logs"),
       api_port: int = typer.Option(8000, help="API port on 127.0.0.1"),
       workers: int = typer.Option(1, help="worker processes"),
       bot: bool = typer.Option(True, help="also run the recording bot")) -> None:
    """Start the whole stack on 127.0.0.1 (redis, S3, API, workers, bot); Ctrl-C stops it all."""
    from recorder.stack import LocalStack, StackOptions, wait_forever

    _sigterm_as_interrupt()
    stack = LocalStack(StackOptions(data_dir=data_dir, api_port=api_port, worker_processes=workers, with_bot=bot))
    try:
        stack.start(progress=lambda m: typer.echo(f"[up] {m}"))
        typer.echo(f"[up] API       {stack.api_url}  (health {stack.api_url}/readyz, docs {stack.api_url}/docs)")
        typer.echo(f"[up] S3        http://{stack.env['RECORDER_S3_ENDPOINT']}  bucket recordings")
        typer.echo(f"[up] logs      {stack.data_dir / 'logs'}")
        typer.echo(f"[up] env for other shells: set -a; . {stack.data_dir / 'stack.env'}; set +a")
        typer.echo("[up] ready — Ctrl-C to stop")
        wait_forever(stack)
    except KeyboardInterrupt:
        typer.echo("[up] stopping…")
    finally:
        stack.stop()


@app.command()
def demo(speed: float = typer.Option(1.0, help="play the interview N× faster than real time"),
         minutes: float = typer.Option(1.5, help="interview length in minutes"),
         exit_after: bool = typer.Option(False, "--exit", envvar="DEMO_EXIT",
                                         help="stop the stack and exit when done (DEMO_EXIT=1)"),
         data_dir: Path = typer.Option(Path("./var"), help="data dir of the local stack (the one "
                                       "`recorder up` and `recorder token` use)"),
         api_port: int = typer.Option(8000, help="API port on 127.0.0.1"),
         mode: str = typer.Option("call", help="call: a room, two aiortc peers, the recording bot and client "
                                  "chunks (the whole product); upload: 30-s chunks uploaded, no call "
                                  "(--speed applies)")) -> None:
    """Start the stack and play a two-person interview through it, end to end."""
    from recorder.demo import run_demo

    if mode not in ("call", "upload"):
        raise typer.BadParameter("--mode is call or upload")
    _sigterm_as_interrupt()
    raise typer.Exit(run_demo(speed=speed, minutes=minutes, exit_after=exit_after,
                              data_dir=data_dir, api_port=api_port, mode=mode))


db_cli = typer.Typer(help="Database schema: apply and inspect migrations (Alembic revisions in core/migrations).",
                     no_args_is_help=True)
app.add_typer(db_cli, name="db")


def _db_engine(url: Optional[str]):
    from core.db import make_engine
    from core.settings import Settings

    return make_engine(url or Settings().database_url)


def _db_failed(exc) -> typer.Exit:
    typer.echo(f"error {exc.code}: {exc.message}", err=True)
    return typer.Exit(1)


@db_cli.command("upgrade")
def db_upgrade(revision: str = typer.Option("head", help="target revision id (default: the newest)")) -> None:
    """Upgrade the database (RECORDER_DATABASE_URL) to the newest schema revision.

    A database made before migrations (tables, no alembic_version) is stamped 0001 first; data is kept.

    Safe to run from several processes at once: a lock makes them take turns.

    The API and the workers do this at start when RECORDER_DB_AUTO_MIGRATE is true.
    """
    from core import migrations
    from core.db import translated
    from core.errors import RecorderError

    engine = _db_engine(None)
    try:
        with translated():
            typer.echo(f"database at revision {migrations.upgrade(engine, revision)} (head {migrations.head()})")
    except RecorderError as exc:
        raise _db_failed(exc) from None
    finally:
        engine.dispose()


@db_cli.command("current")
def db_current() -> None:
    """Show the database's schema revision and the newest one; exit code 1 when behind."""
    from sqlalchemy import inspect

    from core import migrations
    from core.db import translated
    from core.errors import RecorderError

    engine = _db_engine(None)
    try:
        with translated(), engine.connect() as conn:
            revision, tables = migrations.current(conn), inspect(conn).get_table_names()
    except RecorderError as exc:
        raise _db_failed(exc) from None
    finally:
        engine.dispose()
    head = migrations.head()
    if revision is None:
        state = "made before migrations: `recorder db upgrade` adopts it" if tables else "empty"
        typer.echo(f"database: no revision ({state}); head {head}")
    else:
        typer.echo(f"database: {revision}; head {head}" + (" (up to date)" if revision == head else " (behind)"))
    if revision != head:
        raise typer.Exit(1)


@db_cli.command("revision")
def db_revision(message: str = typer.Option(..., "-m", "--message", help="what the revision changes"),
                autogenerate: bool = typer.Option(True, "--autogenerate/--empty",
                                                  help="diff the models against the newest schema, or start empty"),
                url: Optional[str] = typer.Option(None, help="diff against this database, upgraded to head "
                                                  "first (default: a scratch SQLite file)")) -> None:
    """Write core/migrations/versions/NNNN_<message>.py for a model change (source checkouts).

    Review the file: autogenerate misses renames and server-side details.

    The search index (search_doc, search_fts) is not a model: change it with op.execute.

    Every model change needs a revision: tests/core/test_migrations.py fails until they agree.
    """
    import tempfile

    from core import migrations

    with tempfile.TemporaryDirectory() as tmp:
        engine = _db_engine(url or f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            path = migrations.revision(engine, message, autogenerate)
        finally:
            engine.dispose()
    typer.echo(f"wrote {path}")


audit_cli = typer.Typer(help="Audit log: verify the hash chain and its signed checkpoints, sign a checkpoint.",
                        no_args_is_help=True)
app.add_typer(audit_cli, name="audit")


def _audit_settings():
    """Settings from the environment; in a new shell, the running local stack's (`var/stack.env`)."""
    from core.settings import Settings

    if "RECORDER_DATABASE_URL" not in os.environ:
        for key, value in stack_env(Path(os.environ.get("RECORDER_DATA_DIR", "./var"))).items():
            os.environ.setdefault(key, value)
    return Settings()


def _audit_failed(exc) -> typer.Exit:
    typer.echo(f"error {exc.code}: {exc.message}", err=True)
    return typer.Exit(1 if exc.code == "audit_chain_broken" else 2)


@app.command("signing-key")
def signing_key(path: Path = typer.Argument(..., help="where to write the new Ed25519 private key (PEM)")) -> None:
    """Make the service's Ed25519 signing key (audit checkpoints, deletion receipts) for production.

    Every API and worker process must sign with the same key: mount this file into each of
    them and set RECORDER_SIGNING_KEY_PATH (docker-compose uses the `signing_key` secret).
    Refuses to overwrite an existing file; the public key is written next to it."""
    from core.signing import Signer

    if path.exists():
        typer.echo(f"{path} exists; not overwriting a signing key", err=True)
        raise typer.Exit(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = Signer.load_or_create(path)
    typer.echo(f"wrote {path} (key id {signer.key_id}) and its public key next to it")


@audit_cli.command("verify")
def audit_verify(public_key: Optional[Path] = typer.Option(None, "--public-key", help="PEM public key the "
                                                           "checkpoints must verify against (default: the "
                                                           "service's own key, RECORDER_SIGNING_KEY_PATH)")) -> None:
    """Recompute every audit row's hash and link, in order, and check every signed checkpoint.

    Exit code 0: intact. Exit code 1: broken (the first broken seq and why are printed).
    Exit code 2: could not check (database, object store or key unavailable).
    """
    from core import audit
    from core.db import make_engine
    from core.errors import RecorderError
    from core.signing import Signer
    from core.storage import ObjectStore

    s = _audit_settings()
    engine = make_engine(s.database_url)
    try:
        pem = public_key.read_text() if public_key else Signer.from_settings(s).public_key_pem()
        result = audit.verify(engine, ObjectStore.from_settings(s), pem)
    except OSError as exc:
        typer.echo(f"error: cannot read {public_key}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None
    except RecorderError as exc:
        raise _audit_failed(exc) from None
    finally:
        engine.dispose()
    if not result.ok:
        typer.echo(f"audit chain broken at seq {result.first_broken_seq}: {result.reason} "
                   f"({result.checked} rows and {result.checkpoints} checkpoints were intact before it)")
        raise typer.Exit(1)
    typer.echo(f"audit chain intact: {result.checked} rows, {result.checkpoints} signed checkpoints, "
               f"head seq {result.head_seq}")


@audit_cli.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the chain head into the object store now (the workers do it every
    RECORDER_AUDIT_CHECKPOINT_INTERVAL_S). Refuses, with exit code 1, when the rows since the
    previous checkpoint do not verify."""
    from core import audit
    from core.db import make_engine
    from core.errors import RecorderError
    from core.signing import Signer
    from core.storage import ObjectStore

    s = _audit_settings()
    engine = make_engine(s.database_url)
    try:
        cp = audit.checkpoint(engine, ObjectStore.from_settings(s), Signer.from_settings(s))
        seq = cp.seq if cp else audit.head(engine)[0]
    except RecorderError as exc:
        raise _audit_failed(exc) from None
    finally:
        engine.dispose()
    if cp is None:
        typer.echo(f"nothing new to sign: head seq {seq} is checkpointed already" if seq else "the log is empty")
    else:
        typer.echo(f"signed checkpoint {audit.checkpoint_key(cp.seq)} (seq {cp.seq}, key {cp.key})")


@audit_cli.command("public-key")
def audit_public_key() -> None:
    """Print the PEM public key that checkpoint signatures verify against."""
    from core.errors import RecorderError
    from core.signing import Signer

    try:
        typer.echo(Signer.from_settings(_audit_settings()).public_key_pem(), nl=False)
    except RecorderError as exc:
        raise _audit_failed(exc) from None


retention_cli = typer.Typer(help="Retention: preview what the policy deletes (a frozen manifest), run a manifest.",
                            no_args_is_help=True)
app.add_typer(retention_cli, name="retention")


def _retention_failed(exc) -> typer.Exit:
    from core.errors import Conflict, InvalidInput, NotFound

    typer.echo(f"error {exc.code}: {exc.message}", err=True)
    return typer.Exit(2 if isinstance(exc, (Conflict, InvalidInput, NotFound)) else 1)


@retention_cli.command("preview")
def retention_preview(at: Optional[str] = typer.Option(None, help="evaluate at this date (ISO or epoch ms; "
                                                       "default now)"),
                      org: Optional[list[str]] = typer.Option(None, "--org", help="only this org (repeatable; "
                                                              "default every org with a policy)"),
                      as_json: bool = typer.Option(False, "--json", help="print the manifests as JSON"),
                      actor: str = typer.Option("cli", "--as", help="who previews (the manifest's creator)")) -> None:
    """Freeze what each org's policy deletes at DATE into a manifest, and print it.

    Per artifact kind: items, objects, bytes and rows; held items with the holds that keep them.

    Exit code 2: bad date. Exit code 1: database or object store unavailable.
    """
    import json

    from sqlmodel import select

    from core import audit
    from core.artifacts import plan
    from core.db import make_engine, session_scope
    from core.errors import RecorderError
    from core.models import ManifestItem, OrgSettings, RetentionPolicy
    from core.models._types import now_ms
    from core.storage import ObjectStore
    from review_api.search import parse_when

    s = _audit_settings()
    engine = make_engine(s.database_url)
    out = []
    try:
        when = parse_when(at, "at") if at else now_ms()
        with session_scope(engine) as db:
            orgs = org or list(db.exec(select(RetentionPolicy.org)).all())
            approval = {o: bool((row := db.get(OrgSettings, o)) and row.retention_approval) for o in orgs}
        for name in orgs:
            m = plan(engine, ObjectStore.from_settings(s), name, when, created_by=actor,
                     needs_approval=approval[name])
            audit.record(engine, org=name, action=audit.RETENTION_PREVIEW, actor=actor, object_type="manifest",
                         object_id=m.id, detail={"at": when, **(m.summary or {})})
            with session_scope(engine) as db:
                items = db.exec(select(ManifestItem).where(ManifestItem.manifest_id == m.id)).all()
                out.append({**m.model_dump(), "items": [i.model_dump(exclude={"objects", "deleted_objects"})
                                                        for i in items]})
    except RecorderError as exc:
        raise _retention_failed(exc) from None
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(out, indent=2, sort_keys=True))
        return
    for m in out:
        typer.echo(f"manifest {m['id']}  org {m['org']}  at {m['at']}  recordings {m['summary']['recordings']}"
                   + ("  (needs approval)" if m["needs_approval"] else ""))
        for group in ("due", "held"):
            for kind, c in sorted(m["summary"][group].items()):
                typer.echo(f"  {group:4} {kind:14} items {c['items']:5}  objects {c['objects']:6}  "
                           f"bytes {c['bytes']:12}  rows {c['rows']:7}")
        for item in m["items"]:
            if item["status"] == "held":
                typer.echo(f"  held {item['recording_id']} {item['kind']} by {', '.join(item['held_by'] or [])}")


@retention_cli.command("run")
def retention_run(manifest: str = typer.Argument(..., help="manifest id (from `recorder retention preview`)"),
                  actor: str = typer.Option("cli", "--as", help="who runs it (audit log, receipt)")) -> None:
    """Delete what a manifest lists and is still due, in this process; print the receipt id.

    An interrupted run is resumed; a done manifest is left as it is.

    Exit code 2: unknown manifest, or it waits for approval. Exit code 1: the run failed (re-run it).
    """
    from core.errors import RecorderError

    _audit_settings()
    from workers import retention

    try:
        m = retention.run_manifest(retention.tools(), manifest, actor=actor)
    except RecorderError as exc:
        raise _retention_failed(exc) from None
    run = (m.summary or {}).get("run", {})
    typer.echo(f"manifest {m.id} {m.status}; receipt {m.receipt_id}; items {run.get('items', {})}")
    if m.status != "done":
        raise typer.Exit(1)


receipt_cli = typer.Typer(help="Deletion receipts: check a downloaded receipt offline.", no_args_is_help=True)
app.add_typer(receipt_cli, name="receipt")


@receipt_cli.command("verify")
def receipt_verify(file: Path = typer.Argument(..., help="the receipt JSON (GET /v1/receipts/{id})"),
                   public_key: Optional[Path] = typer.Option(None, "--public-key", help="PEM public key it must "
                                                             "be signed with (default: the key it carries; "
                                                             "compare its key id with the service's)")) -> None:
    """Check a deletion receipt's Ed25519 signature over its content, offline.

    Exit code 0: intact and signed by the key. Exit code 1: changed, or signed by another key.
    """
    import json

    from core.retention import check_receipt

    try:
        document = json.loads(file.read_bytes())
        pem = public_key.read_text() if public_key else None
    except (OSError, ValueError) as exc:
        typer.echo(f"invalid: cannot read the receipt or key ({type(exc).__name__})")
        raise typer.Exit(1) from None
    ok, why = check_receipt(document, pem) if isinstance(document, dict) else (False, "not a receipt")
    typer.echo(("ok: " if ok else "invalid: ") + why)
    raise typer.Exit(0 if ok else 1)


if __name__ == "__main__":  # pragma: no cover
    app()
