"""Training (paper §4.2, §4.4.5; docs/training.md): augmentation, losses, the loop, data parallelism, monitoring.

    from gantlitz.train import train
    result = train("DS", "runs/s", "gantlitz-s", overrides={"train.batch": 3}, steps=100_000)

See docs/training.md. `gantlitz.train.augment` is importable on its own.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "Trainer", "TrainResult", "TrainError", "RunExistsError", "TrainingDiverged",
           "TrainingInterrupted"]

_HOMES = {"train": "loop", "Trainer": "loop", "TrainResult": "loop"}


def __getattr__(name: str) -> Any:
    # Lazy, so `import gantlitz.train.augment` does not pull in the loop (and its data / checkpoint imports).
    if name in __all__:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES.get(name, 'run')}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
