"""`gantlitz` command line: a thin layer over the Python API, one module per area of work."""

from __future__ import annotations

import importlib
import logging

import click

_AREAS = ("data", "info", "train", "generate", "invert", "evaluate", "render")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """GANtlitz: seamless ultra-high-resolution multi-modal face textures from few scans."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s")


for _area in _AREAS:
    importlib.import_module(f"{__name__}.{_area}").register(main)
