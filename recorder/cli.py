"""`recorder` command line: api | worker | bot | up | token | demo."""
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


@app.command()
def bot() -> None:
    """Run the recording bot service: joins rooms with recording on and records every track."""
    from bot.service import run

    run()


@app.command()
def token(org: str = typer.Option(..., help="organisation id"),
          role: str = typer.Option(..., help="admin|compliance|interviewer|assessor|candidate|service|recorder"),
          sub: str = typer.Option(..., help="subject (user or service id)"),
          ttl: int = typer.Option(3600, help="lifetime in seconds"),
          scope: str = typer.Option("api", help="api | upload | join"),
          recording: Optional[str] = typer.Option(None, help="bind to this recording (upload scope)"),
          room: Optional[str] = typer.Option(None, help="bind to this room (join scope)"),
          participant: Optional[str] = typer.Option(None, help="bind to this participant")) -> None:
    """Mint a JWT with the configured secret (for local use and scripts)."""
    from core.auth import mint_token
    from core.settings import Settings

    s = Settings()
    typer.echo(mint_token(s.jwt_secret, sub=sub, org=org, role=role, ttl_s=ttl, scope=scope, issuer=s.jwt_issuer,
                          recording_id=recording, room_id=room, participant_id=participant))


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
         data_dir: Path = typer.Option(Path("./var/demo"), help="data dir of the demo stack"),
         api_port: int = typer.Option(8000, help="API port on 127.0.0.1")) -> None:
    """Start the stack and play a two-person interview through it, end to end."""
    from recorder.demo import run_demo

    _sigterm_as_interrupt()
    raise typer.Exit(run_demo(speed=speed, minutes=minutes, exit_after=exit_after,
                              data_dir=data_dir, api_port=api_port))


if __name__ == "__main__":  # pragma: no cover
    app()
