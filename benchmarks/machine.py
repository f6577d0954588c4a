"""The machine description every benchmark prints beside its figures (imported by the scripts here)."""

from __future__ import annotations

import contextlib
import os
import platform

import torch


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, else what the platform module knows."""
    with contextlib.suppress(OSError, StopIteration):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    return platform.processor() or platform.machine()


def short_name(device: torch.device | str) -> str:
    """GPU name on CUDA, else the CPU model with its core count: for table cells."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ×{os.cpu_count()}"


def describe(device: torch.device | str) -> str:
    """Full description: device, memory, library versions, threads and the load average at the start."""
    device = torch.device(device)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    text = (
        f"{cpu_name()}, {os.cpu_count()} logical CPUs, {ram:.0f} GiB RAM, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), {platform.system()} {platform.release()}; "
        f"load average at start {load}"
    )
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        text = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}; " + text
    return text
