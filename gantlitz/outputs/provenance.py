"""Provenance of the JSON records a command writes."""

from __future__ import annotations

import shlex
import sys
import time
from typing import Any


def run_info(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance block for the JSON records: command, versions, machine."""
    import torch

    from .. import __version__

    info: dict[str, Any] = {
        "command": shlex.join(["gantlitz", *sys.argv[1:]]),
        "gantlitz_version": __version__,
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    info.update(extra or {})
    return info
