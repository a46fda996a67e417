"""`orchestrate dashboard`: the live web dashboard, served from this process."""

# No `from __future__ import annotations`: typer reads the annotations (see cli/app.py).
import typer

from orchestrate.cli.app import session


def dashboard(
    ctx: typer.Context,
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Default: the config's dashboard.port, else 8765; 0 picks a free one."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; any but loopback needs a token."),
    token: str | None = typer.Option(
        None, "--token", envvar="ORCHESTRATE_DASHBOARD_TOKEN", help="Required of every request (default: the config's)."
    ),
) -> None:
    """Serve the live web dashboard until Ctrl-C."""
    from orchestrate.dashboard import server as web  # the server and its JSON stay off the other commands' start-up
    from orchestrate.dashboard import settings

    with session(ctx).queue(create=False):  # a file that is not a queue is exit 2 here, not an error on every request
        pass
    cfg = session(ctx).config
    shown = settings(cfg)
    port = (shown.port or web.DEFAULT_PORT) if port is None else port
    server = web.open_server(cfg, host, port, token or shown.token)
    typer.echo(f"dashboard on {server.url} (Ctrl-C stops it)")
    web.serve_until_stopped(server)
