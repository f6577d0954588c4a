"""CLI command: `studio` (a local web app over a trained run)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("studio")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes the studio (no authentication).")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True, help="0: any free port.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ... (auto: CUDA when available).")
@click.option("--cache-mb", type=click.IntRange(min=16), default=512, show_default=True,
              help="Memory for cached passes and tiles (MiB).")
@click.option("--queue", type=click.IntRange(min=1, max=1024), default=32, show_default=True,
              help="Most requests waiting for the generator; more are answered 503 (retry).")
def studio_cmd(run: Path, host: str, port: int, device: str, cache_mb: int, queue: int) -> None:
    """Explore RUN (a run directory or checkpoint) in the browser: seeds, deep zoom, interpolation,
    noise, a lit 3D head and downloads. Serves http://HOST:PORT/ until Ctrl-C."""
    from ..studio import Limits, open_model, serve
    from ..studio.server import bind, is_loopback

    model = open_model(str(run), device)
    sock = bind(host, port)
    if not is_loopback(host):
        click.echo(f"warning: --host {host} makes the studio reachable from other machines; it has no "
                   "authentication and anyone who can connect can use this machine's generator", err=True)
    address = sock.getsockname()
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    click.echo(f"{model.name}: canvas {model.canvas[1]}x{model.canvas[0]}, patch {model.patch_size}, device "
               f"{model.device}; studio at http://{shown}:{address[1]}/  (Ctrl-C stops it)")
    serve(model, sock, Limits(queue=queue, cache_mb=cache_mb))


def register(group: click.Group) -> None:
    """Add `studio` to the top-level group."""
    group.add_command(studio_cmd)
