"""`gantlitz` command line: a thin layer over the Python API, one module per area of work.

The commands only parse arguments and call the API. Errors cross one boundary (`Boundary.invoke`): a
`GantlitzError` (a user's mistake or a condition they can act on) and an `OSError` about a named file
become `Error: <message>` and an exit code, as does a full disk or an I/O error wherever it happens;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import importlib
import logging
from typing import Any

import click

from ..errors import GantlitzError

_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS)
"""OS errors that are the machine's condition, not a bug, even when no file is named (a writer deep in a
library, e.g. TensorBoard's, hit a full disk)."""
_AREAS = ("data", "info", "train", "generate", "invert", "evaluate", "render", "studio")


class Boundary(click.Group):
    """The CLI's one error boundary."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GantlitzError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            if exc.filename is None and exc.errno not in _DISK_ERRORS:
                raise
            where = f"{exc.filename}: " if exc.filename is not None else ""
            click.echo(f"Error: {where}{exc.strerror or exc}" + (" (free some space and run again)" if
                                                                 exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""),
                       err=True)
            ctx.exit(1)


@click.group(cls=Boundary, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """GANtlitz: seamless ultra-high-resolution multi-modal face textures from few scans."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s")


for _area in _AREAS:
    importlib.import_module(f"{__name__}.{_area}").register(main)
