"""gantlitz.device: one resolver for every command, and a precision context that leaves the process as it was."""

from __future__ import annotations

import pytest
import torch

from gantlitz.device import precision_context, resolve_device, resolve_precision
from gantlitz.errors import UsageError


def _flags() -> tuple:
    try:
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    except RuntimeError:  # the fp32_precision API (PyTorch >= 2.9)
        tf32 = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    return (*tf32, torch.backends.cudnn.benchmark)


def test_unknown_or_unavailable_devices_are_usage_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(UsageError, match="unknown precision"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_precision_context_restores_the_process_flags(precision):
    before = _flags()
    # The flags are plain process state: switching them needs no GPU, so this runs everywhere.
    with precision_context(torch.device("cuda"), precision, autocast=False):
        inside = _flags()
    assert _flags() == before
    assert inside[0] in ((False, "ieee") if precision == "fp32" else (True, "tf32"))
