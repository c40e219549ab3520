"""`agent-telemetry-server serve | migrate | quickstart | stop`."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import click
import structlog
from aiohttp import web

from agent_telemetry_server import __version__, logs, quickstart
from agent_telemetry_server.app import apply_migrations, create_app
from agent_telemetry_server.config import CONFIG_ENV, ConfigError, Settings, load_settings
from agent_telemetry_server.migrate import MigrationError
from agent_telemetry_server.pgcluster import ClusterError

# As uvicorn does: a server that could not start exits with its own code, so a supervisor
# can tell "misconfigured, don't restart in a loop" from a crash.
STARTUP_FAILURE = 3

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help=f"TOML config file (or ${CONFIG_ENV}).",
)
database_option = click.option("--database-url", help="PostgreSQL URL; $DATABASE_URL when absent.")


def _settings(config_path: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config_path).with_overrides(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _startup_failure(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(STARTUP_FAILURE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="agent-telemetry-server")
def main() -> None:
    """The reference backend for agent-telemetry's `http` sender, on PostgreSQL."""


@main.command()
@config_option
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default 8080).")
@database_option
def serve(
    config_path: Path | None, host: str | None, port: int | None, database_url: str | None
) -> None:
    """Migrate the database if needed, then serve the API.

    Example: TELEMETRY_API_KEYS=k1,k2 agent-telemetry-server serve --database-url postgresql://...
    """
    settings = _settings(config_path, host=host, port=port, database_url=database_url)
    try:
        settings.require_database_url()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.api_keys:
        raise click.ClickException("no ingest keys: set TELEMETRY_API_KEYS or api_keys in config")
    logs.configure()
    log = structlog.get_logger("agent_telemetry_server")
    if not settings.read_keys:
        log.warning("no read keys configured: stats and analytics will answer 401")
    _run_server(settings)


def _run_server(settings: Settings, ready: Callable[[], None] | None = None) -> None:
    """Serve until SIGTERM or Ctrl-C; `ready` runs once the port is bound."""
    log = structlog.get_logger("agent_telemetry_server")
    app = create_app(settings)

    def announce(*_args: object) -> None:
        log.info("serving", host=settings.host, port=settings.port, version=__version__)
        if ready is not None:
            ready()

    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            access_log=None,  # aiohttp's access log records client addresses; ours does not
            print=announce,
            shutdown_timeout=settings.shutdown_timeout,
        )
    except MigrationError as exc:
        _startup_failure(str(exc))
    except asyncpg.ClientConfigurationError as exc:
        # A database URL asyncpg refuses to use (an unknown sslmode, say): a setting to fix,
        # not a database that is down. Before InterfaceError, of which it is one.
        raise click.ClickException(f"database URL: {exc}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _startup_failure(f"{type(exc).__name__}: {exc}")
    log.info("stopped")


@main.command("migrate")
@config_option
@database_option
def migrate_command(config_path: Path | None, database_url: str | None) -> None:
    """Apply pending database migrations and exit.

    Example: agent-telemetry-server migrate --database-url postgresql://...
    """
    settings = _settings(config_path, database_url=database_url)
    logs.configure()
    try:
        settings.require_database_url()
        applied = asyncio.run(apply_migrations(settings))
    except (ConfigError, MigrationError) as exc:
        raise click.ClickException(str(exc)) from None
    except asyncpg.ClientConfigurationError as exc:
        raise click.ClickException(f"database URL: {exc}") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _startup_failure(f"{type(exc).__name__}: {exc}")
        return
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("database is up to date")


data_dir_option = click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the cluster, keys and settings (made 0700 if missing).",
)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        # As aiohttp binds: connections of a previous run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@main.command("quickstart")
@data_dir_option
@click.option("--host", default=None, help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default 8080).")
def quickstart_command(data_dir: Path, host: str | None, port: int | None) -> None:
    """Make (or reuse) a private PostgreSQL cluster in DIR, migrate it, make keys, serve,
    and print the settings a daemon needs. Runs until Ctrl-C, which stops the cluster too.

    Run it as an ordinary user (PostgreSQL refuses root). Example:
    agent-telemetry-server quickstart --data-dir ~/telemetry-backend
    """
    try:
        quickstart.refuse_root(data_dir.resolve())
        prepared = quickstart.prepare(data_dir, host, port)
    except (quickstart.QuickstartError, ClusterError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        _startup_failure(f"{type(exc).__name__}: {exc}")
        return
    settings = prepared.settings
    try:
        if not _port_free(settings.host, settings.port):
            raise click.ClickException(
                f"port {settings.port} on {settings.host} is in use: pass --port"
            )
        prepared.layout.pid_file.write_text(f"{os.getpid()}\n")
        logs.configure()

        def ready() -> None:
            click.echo(quickstart.announcement(prepared))
            sys.stdout.flush()

        _run_server(settings, ready)
    finally:
        prepared.layout.pid_file.unlink(missing_ok=True)
        try:
            prepared.cluster.stop()
        except ClusterError as exc:
            click.echo(f"Error: {exc}", err=True)


@main.command("stop")
@click.option(
    "--data-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder `quickstart --data-dir` was given.",
)
def stop_command(data_dir: Path) -> None:
    """Stop what `quickstart --data-dir DIR` started: its server, then its cluster.

    Example: agent-telemetry-server stop --data-dir ~/telemetry-backend
    """
    try:
        for line in quickstart.stop(data_dir):
            click.echo(line)
    except (quickstart.QuickstartError, ClusterError) as exc:
        raise click.ClickException(str(exc)) from None
