"""Data: synthetic scans (`synth`), preparation into a patch store (`prepare`), reading (`store`) and
training-batch sampling (`sampling`).  See docs/data.md."""

from .prepare import PrepareError
from .prepare import prepare as prepare_dataset  # the module `gantlitz.data.prepare` keeps its name
from .sampling import (
    GroupedBatchSampler,
    PatchDataset,
    inference_tiles,
    patch_loader,
    raw_to_network,
    training_locations,
)
from .store import PatchStore, StoreError
from .synth import synthesize_dataset

__all__ = [
    "PatchStore",
    "StoreError",
    "PrepareError",
    "prepare_dataset",
    "synthesize_dataset",
    "training_locations",
    "inference_tiles",
    "GroupedBatchSampler",
    "PatchDataset",
    "patch_loader",
    "raw_to_network",
]
