"""Data: synthetic scans (`synth`), preparation into a patch store (`prepare`), reading (`store`) and
training-batch sampling (`sampling`).  See docs/data.md."""

from typing import Any

from .sampling import (
    GroupedBatchSampler,
    PatchDataset,
    inference_tiles,
    patch_loader,
    raw_to_network,
    training_locations,
)
from .store import PatchStore, StoreError

__all__ = [
    "PatchStore",
    "StoreError",
    "PrepareError",
    "synthesize_dataset",
    "training_locations",
    "inference_tiles",
    "GroupedBatchSampler",
    "PatchDataset",
    "patch_loader",
    "raw_to_network",
]


def __getattr__(name: str) -> Any:
    """`prepare` and `synth` read and write image files: importing them (and OpenImageIO) waits until
    they are used, so training and generation never load the image libraries."""
    if name == "PrepareError":
        from .prepare import PrepareError

        return PrepareError
    if name == "synthesize_dataset":
        from .synth import synthesize_dataset

        return synthesize_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
