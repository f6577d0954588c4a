"""The run directory of a training run: its files, its lock, and the policy for starting, resuming and
overwriting it.

```
RUN/config.json           resolved preset, dataset facts, versions, one history entry per start
RUN/checkpoints/step-*.safetensors   the last `keep_checkpoints`, written atomically
RUN/model.safetensors     G_ema at the end
RUN/metrics.jsonl, RUN/logs/, RUN/previews/
RUN/.lock                 holder (pid, host) of the advisory lock while a process trains in RUN
```

Rules: a run directory is used by one process at a time (`outputs.FolderLock`); without --resume or --overwrite an
existing run is refused; --overwrite removes only the entries above (never other files, never a folder
holding the dataset); --resume continues from the newest checkpoint that loads and holds finite weights,
naming every newer one it skips; leftovers of killed checkpoint writes are removed at start.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .. import checkpoint
from ..config import ConfigError, preset_from_dict
from ..errors import GantlitzError
from ..outputs import (LOCK_NAME, FolderLock, check_output_dir, make_dirs, remove_owned, remove_temporaries, write_json,
                       write_text)

log = logging.getLogger(__name__)

__all__ = ["TrainError", "RunExistsError", "TrainingDiverged", "TrainingInterrupted",
           "RunDirectory", "Resumable", "RUN_ENTRIES", "history_entry", "versions", "check_dataset"]

RUN_ENTRIES = frozenset({"config.json", "checkpoints", "model.safetensors", "metrics.jsonl", "logs", "previews"})
"""What a training run writes into its directory: all that --overwrite may remove there."""


class TrainError(GantlitzError, RuntimeError):
    """A training run that can not start or had to stop; the message says why and what to do."""


class RunExistsError(TrainError):
    """The run directory already holds a run and neither resume nor overwrite was asked for."""


class TrainingDiverged(TrainError):
    """A loss or a weight became NaN/Inf; the last good checkpoint is kept."""

    exit_code = 3


class TrainingInterrupted(TrainError):
    """SIGINT/SIGTERM: a checkpoint was written; resume with --resume."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class Resumable:
    """The checkpoint a resumed run continues from."""

    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def _checkpoint_problem(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """Why a loaded checkpoint can not be resumed from, or None."""
    for key in ("step", "preset", "optimizers", "augment"):
        if key not in meta:
            return f"its metadata lacks {key!r}"
    try:
        preset_from_dict(meta["preset"])
    except (KeyError, TypeError, ValueError) as exc:
        return f"its recorded preset is invalid ({exc!r})"
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"tensor {name} holds NaN/Inf"
    return None


@dataclass
class RunDirectory:
    """One training run's folder (see the module docstring for its files and rules)."""

    path: Path
    lock: FolderLock = field(init=False)
    checkpoints: Path = field(init=False)
    config: Path = field(init=False)
    metrics: Path = field(init=False)
    model: Path = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.lock = FolderLock(self.path, "training process")
        self.checkpoints = self.path / "checkpoints"
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.model = self.path / "model.safetensors"
        self._created = False

    def own_entries(self) -> list[Path]:
        return sorted(e for e in self.path.iterdir() if e.name in RUN_ENTRIES) if self.path.is_dir() else []

    def check(self, *, data: str | os.PathLike, resume: bool, overwrite: bool) -> None:
        """Refuse what the rules forbid, touching nothing (every process of a run calls it)."""
        check_output_dir(self.path, inputs=[data], overwrite=True, what="run")
        entries = self.own_entries()
        if entries and not resume and not overwrite:
            raise RunExistsError(
                f"{self.path} already holds a run ({', '.join(e.name for e in entries)}); pass --resume to continue "
                "it or --overwrite to start over (its checkpoints, model, logs and previews are deleted)"
            )

    def open(self, *, overwrite: bool, resume: bool) -> None:
        """Create the folder and take the lock (main process); --overwrite then clears the run's own files."""
        self._created = not self.path.exists()
        make_dirs(self.path)
        self.lock.acquire()
        try:
            if overwrite and not resume:
                remove_owned(self.path, lambda e: e.name in RUN_ENTRIES)
            make_dirs(self.checkpoints)
            remove_temporaries(self.path)
            remove_temporaries(self.checkpoints)
        except BaseException:
            self.lock.release()
            raise

    def close(self) -> None:
        """Release the lock; a folder this process created and left without a file is removed again."""
        self.lock.release()
        if self._created:
            with contextlib.suppress(OSError):
                self.checkpoints.rmdir()  # only when empty
            if [e.name for e in self.path.iterdir()] == [LOCK_NAME]:
                (self.path / LOCK_NAME).unlink()
                self.path.rmdir()

    def resumable(self) -> Resumable | None:
        """The newest checkpoint that loads and holds finite weights; skipped ones are named in warnings."""
        found = sorted(self.checkpoints.glob(checkpoint.CHECKPOINT_GLOB), reverse=True)
        for path in found:
            try:
                tensors, meta = checkpoint.load(path)
            except checkpoint.CheckpointError as exc:
                log.warning("skipping checkpoint %s: %s", path.name, exc)
                continue
            problem = _checkpoint_problem(tensors, meta)
            if problem is None:
                return Resumable(path, tensors, meta)
            log.warning("skipping checkpoint %s: %s", path.name, problem)
        if found:
            raise RunExistsError(f"{self.checkpoints}: none of the {len(found)} checkpoint(s) can be resumed "
                                 "(see the warnings above); pass --overwrite to start over")
        if self.model.exists() or self.metrics.exists():
            raise RunExistsError(f"{self.path}: no checkpoint to resume from, but it holds a trained run "
                                 "(model.safetensors / metrics.jsonl); pass --overwrite to start over")
        return None

    def record_start(self, entry: Mapping[str, Any], config: Mapping[str, Any], *, resume: bool) -> None:
        """Write config.json: the resolved configuration plus the history of starts (kept across resumes)."""
        history: list[Any] = []
        if resume and self.config.exists():
            try:
                history = list(json.loads(self.config.read_text()).get("runs", []))
            except (ValueError, AttributeError, TypeError) as exc:
                raise ConfigError(f"{self.config}: not a readable run configuration ({exc}); repair it or move "
                                  "it away (it records the run's history) and resume again") from None
        write_json(self.config, {**config, "runs": [*history, dict(entry)]}, overwrite=True)

    def trim_metrics(self, start_step: int) -> None:
        """Drop metrics logged after `start_step` (a resumed run logs those steps again)."""
        if not self.metrics.exists():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            try:
                if int(json.loads(line).get("step", 0)) <= start_step:
                    kept.append(line)
            except (ValueError, AttributeError):
                continue
        write_text(self.metrics, "".join(k + "\n" for k in kept), overwrite=True)

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any], keep: int) -> Path:
        """Write the checkpoint of `step` and prune all but the newest `keep`."""
        path = checkpoint.save(checkpoint.step_path(self.checkpoints, step), tensors, meta)
        found = sorted(self.checkpoints.glob(checkpoint.CHECKPOINT_GLOB))
        for old in found[: max(len(found) - keep, 0)]:
            old.unlink(missing_ok=True)
        return path


def history_entry(command: Sequence[str] | None, start_step: int, world_size: int, device: Any) -> dict[str, Any]:
    """One start of the run, for config.json's history."""
    return {"command": list(command) if command is not None else list(sys.argv),
            "started": datetime.datetime.now().isoformat(timespec="seconds"), "start_step": start_step,
            "world_size": world_size, "device": str(device)}


def versions() -> dict[str, str]:
    """Software versions recorded in config.json."""
    import numpy as np

    from .. import __version__

    return {"gantlitz": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "cuda": str(torch.version.cuda), "platform": platform.platform()}


def check_dataset(resumed: Resumable, data_meta: Mapping[str, Any]) -> None:
    """Warn when a resumed run continues on another dataset than the one it started on."""
    before = (resumed.meta.get("dataset") or {}).get("path")
    if before and before != data_meta.get("path"):
        log.warning("resuming %s on the dataset %s; it was trained on %s until step %d",
                    resumed.path.name, data_meta.get("path"), before, resumed.step)
