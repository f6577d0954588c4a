"""CLI commands: invert (filled in by its owner)."""

import click


def register(group: click.Group) -> None:
    """Add this area's commands to the top-level group."""
