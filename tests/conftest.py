"""Shared fixtures: a tiny synthetic raw dataset and its prepared store (256 x 256, 3 subjects)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

TINY_SIZE = (256, 256)
TINY_SUBJECTS = 3


@pytest.fixture(scope="session")
def raw_dataset(tmp_path_factory) -> Path:
    """`gantlitz synth` output: 3 subjects at 256 x 256 (mask.png + subjectNNN/{albedo,specular,normal}.png).

    Shared by the session: do not modify it; copy it with `raw_copy`."""
    from gantlitz.data.synth import synthesize_dataset

    out = tmp_path_factory.mktemp("synth") / "raw"
    return synthesize_dataset(out, TINY_SUBJECTS, TINY_SIZE, seed=0, progress=False)


@pytest.fixture()
def raw_copy(raw_dataset, tmp_path) -> Path:
    """A private, modifiable copy of `raw_dataset`."""
    dst = tmp_path / "raw"
    shutil.copytree(raw_dataset, dst)
    return dst


@pytest.fixture(scope="session")
def prepared_store(raw_dataset, tmp_path_factory) -> Path:
    """The prepared store of `raw_dataset` (read-only; open it with `gantlitz.data.PatchStore`)."""
    from gantlitz.data.prepare import prepare

    out = tmp_path_factory.mktemp("store") / "ds"
    return prepare(raw_dataset, out, progress=False)


def lps_dir() -> Path | None:
    """The full-resolution Lee Perry-Smith scan, if this checkout can see it."""
    from gantlitz.data.synth import find_scan_dir

    try:
        return find_scan_dir()
    except FileNotFoundError:
        return None


@pytest.fixture(autouse=True)
def seeded_global_rng() -> None:
    """Draws without an explicit generator (`torch.randn(...)`) are the same in every run and test order:
    torch seeds its global generator differently in each process."""
    torch.manual_seed(0)


@pytest.fixture()
def one_thread():
    """Tiny models run faster on one thread, and a busy 2-core machine is not oversubscribed."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def compile_backend() -> str:
    """The torch.compile backend of the `compile` tests: aot_eager by default (Dynamo's full-graph capture
    plus AOTAutograd tracing, no C++ toolchain, seconds on a CPU); GANTLITZ_COMPILE_BACKEND=inductor also
    generates code. Skips where Dynamo is unavailable (unsupported Python, Windows builds)."""
    import os

    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile (Dynamo) is not supported on this Python/platform")
    torch._dynamo.reset()
    return os.environ.get("GANTLITZ_COMPILE_BACKEND", "aot_eager")


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory) -> Path:
    """A random small generator saved as a checkpoint (`helpers.small_checkpoint`), read-only."""
    from helpers import small_checkpoint

    return small_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def model(ckpt):
    """`ckpt` loaded as a `TextureModel`."""
    import gantlitz

    return gantlitz.load(ckpt)
