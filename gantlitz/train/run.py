"""The run directory of a training run: its files, its lock, and the policy for starting, resuming and
overwriting it.

```
RUN/config.json           resolved preset, dataset facts, versions, one history entry per start
RUN/checkpoints/step-*.safetensors   the last `keep_checkpoints`, written atomically
RUN/model.safetensors     G_ema at the end
RUN/metrics.jsonl, RUN/logs/, RUN/previews/
RUN/.lock                 holder (pid, host) of the advisory lock while a process trains in RUN
RUN/**/.gantlitz-record.json   what the run wrote (`outputs.writing("train")`), kept current at every checkpoint
```

Rules: a run directory is used by one process at a time (`outputs.FolderLock`); without --resume or --overwrite an
existing run is refused; --overwrite removes only the files the run's record names and that are unchanged
(never other files, never a folder holding the dataset, nothing in a folder without a record); --resume
continues from the newest checkpoint that passes the checks (loads, metadata of the right types, a preset
that validates and matches the weights' shapes, finite weights), naming every newer one it skips, and only
on the dataset the run started on (same subjects, canvas); leftovers of killed checkpoint writes are
removed at start.
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
from ..config import preset_from_dict, validate
from ..errors import ConfigError, GantlitzError
from ..outputs import (LOCK_NAME, FolderLock, check_apart, make_dirs, owned, record, remove_owned, remove_temporaries,
                       writing, write_json, write_text)

log = logging.getLogger(__name__)

__all__ = ["TrainError", "RunExistsError", "TrainingDiverged", "TrainingInterrupted", "RunDirectory", "Resumable",
           "history_entry", "versions", "check_dataset", "dataset_identity"]

COMMAND = "train"
"""The command name a run's files are recorded under."""


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


_META_TYPES = {"step": int, "preset": dict, "optimizers": dict, "augment": dict, "rng": dict, "dataset": dict}


def _checkpoint_problem(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str | None:
    """Why a loaded checkpoint can not be resumed from, or None: the metadata's types, a preset that
    validates and whose networks (built without memory) match the tensors' shapes, finite weights."""
    for key, kind in _META_TYPES.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            return f"its metadata's {key!r} is {type(meta.get(key)).__name__}, expected {kind.__name__}"
    if meta["step"] < 0:
        return f"its step {meta['step']} is negative"
    optimizers = meta["optimizers"]
    if not all(isinstance(optimizers.get(k), dict) and isinstance(optimizers[k].get("param_groups"), list)
               for k in ("opt_G", "opt_D")):
        return "its optimizer state is not opt_G / opt_D objects with param_groups"
    try:
        preset = preset_from_dict(meta["preset"])
        validate(preset)
        for prefix in ("G", "G_ema", "D"):
            checkpoint.check_shapes(preset, checkpoint.subset(dict(tensors), prefix), str(meta.get("path")), prefix)
    except (KeyError, TypeError, ValueError, checkpoint.CheckpointError) as exc:
        return f"its recorded preset is invalid or does not match its weights ({exc})"
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return f"tensor {name} holds NaN/Inf"
    return None


def dataset_identity(data: str | os.PathLike) -> dict[str, Any] | None:
    """What makes a dataset the same one for a resumed run: its subjects (names, hence count) and canvas,
    from its manifest (None when it has none: the dataset check reports that)."""
    path = Path(data) / "manifest.json"
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        return {"subjects": list(manifest["subjects"]), "canvas": dict(manifest["canvas"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _identity_changes(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    old, new = list(before.get("subjects", [])), list(now.get("subjects", []))
    changes = []
    if old != new:
        gone, added = sorted(set(old) - set(new)), sorted(set(new) - set(old))
        changes.append(f"subjects: {len(old)} then, {len(new)} now" + (f"; gone: {', '.join(gone[:5])}" if gone else "")
                       + (f"; new: {', '.join(added[:5])}" if added else "") + ("" if gone or added else "; reordered"))
    if dict(before.get("canvas", {})) != dict(now.get("canvas", {})):
        changes.append(f"canvas: {before.get('canvas')} then, {now.get('canvas')} now")
    return changes


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
        self._made_checkpoints = False
        self._identity: dict[str, Any] | None = None
        self._writing: contextlib.ExitStack | None = None
        self._started = 0.0

    def run_files(self) -> list[Path]:
        """The files that make a folder hold a run (an empty checkpoints/ or a user's logs/ do not)."""
        found = [p for p in (self.config, self.model, self.metrics) if p.is_file()]
        return found + sorted(self.checkpoints.glob(checkpoint.CHECKPOINT_GLOB))

    def check(self, *, data: str | os.PathLike, resume: bool, overwrite: bool, allow_data_change: bool = False) -> None:
        """Refuse what the rules forbid, touching nothing (every process of a run calls it); a resumed run
        on a dataset whose subjects or canvas changed is refused unless `allow_data_change`."""
        check_apart(self.path, [data], what="run")
        found = self.run_files()
        if found and not resume and not overwrite:
            raise RunExistsError(
                f"{self.path} already holds a run ({', '.join(sorted({str(e.relative_to(self.path)).split('/')[0] for e in found}))}); "
                "pass --resume to continue it or --overwrite to start over (the files its record names are deleted)"
            )
        if overwrite and not resume:
            foreign = [p for p in found if not owned(p, COMMAND) and not self._appended_by_run(p)]
            if foreign:
                raise RunExistsError(
                    f"{self.path}: --overwrite replaces only the files `gantlitz train` recorded here, and "
                    f"{', '.join(str(p.relative_to(self.path)) for p in foreign[:4])} are not (no record names them, "
                    "or they changed since); move them away or choose another --out (nothing was touched)")
        self._identity = dataset_identity(data)
        if resume and found and not allow_data_change:
            self._check_same_dataset(data)

    def _appended_by_run(self, path: Path) -> bool:
        """metrics.jsonl grows after its last record (a killed run): it is the run's when its config is."""
        return path == self.metrics and owned(self.config, COMMAND)

    def _check_same_dataset(self, data: str | os.PathLike) -> None:
        """A resumed run continues on the dataset it started on: same subject names and canvas."""
        try:
            before = json.loads(self.config.read_text()).get("dataset_identity") if self.config.is_file() else None
        except (OSError, ValueError, AttributeError):
            return  # record_start reports an unreadable config.json
        if not isinstance(before, dict) or self._identity is None:
            return
        changes = _identity_changes(before, self._identity)
        if changes:
            raise RunExistsError(f"{data}: not the dataset the run in {self.path} was trained on (" + "; ".join(changes)
                                 + "); resume on that dataset, continue on this one with --allow-data-change, or start a new run "
                                 "(another --out, or --overwrite)")

    def open(self, *, overwrite: bool, resume: bool) -> None:
        """Create the folder, take the lock and start recording (main process); --overwrite then removes the
        run's own recorded files, --resume adopts the run's files as its own (it continues them)."""
        self._created = not self.path.exists()
        self._made_checkpoints = not self.checkpoints.exists()
        self._started = datetime.datetime.now().timestamp()
        make_dirs(self.path)
        self.lock.acquire()
        self._writing = contextlib.ExitStack()
        self._writing.enter_context(writing(COMMAND))
        try:
            if overwrite and not resume:
                record([p for p in [self.metrics] if p.is_file() and self._appended_by_run(p)])
                remove_owned(self.path)
            if resume:
                record(self.run_files())
            make_dirs(self.checkpoints)
            remove_temporaries(self.path)
            remove_temporaries(self.checkpoints)
        except BaseException:
            self._stop_writing()
            self.lock.release()
            raise

    def _stop_writing(self) -> None:
        """Record what other writers made during the run (TensorBoard logs, previews, the appended metrics),
        then leave the run's `writing` block."""
        if self._writing is None:
            return
        made = [p for folder in (self.path / "logs", self.path / "previews") for p in folder.rglob("*")]
        record(p for p in [self.metrics, *made] if p.is_file() and p.stat().st_mtime >= self._started - 1)
        self._writing.close()
        self._writing = None

    def close(self) -> None:
        """Record the run's files, release the lock; what this process created and left empty is removed."""
        self._stop_writing()
        self.lock.release()
        if self._made_checkpoints:
            with contextlib.suppress(OSError):
                self.checkpoints.rmdir()  # only when empty
        if self._created and [e.name for e in self.path.iterdir()] == [LOCK_NAME]:
            (self.path / LOCK_NAME).unlink()
            self.path.rmdir()

    def resumable(self) -> Resumable | None:
        """The newest checkpoint that passes the checks; skipped ones are named in warnings."""
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
        if self.model.exists():
            raise RunExistsError(f"{self.path}: no checkpoint to resume from, but it holds a trained run "
                                 "(model.safetensors); pass --overwrite to start over")
        return None  # stopped before its first checkpoint: it starts again from step 0

    def record_start(self, entry: Mapping[str, Any], config: Mapping[str, Any], *, resume: bool) -> None:
        """Write config.json: the resolved configuration plus the history of starts (kept across resumes)."""
        history: list[Any] = []
        if resume and self.config.exists():
            try:
                if not self.config.is_file():
                    raise ValueError("not a regular file")
                history = list(json.loads(self.config.read_text()).get("runs", []))
            except (ValueError, AttributeError, TypeError) as exc:
                raise ConfigError(f"{self.config}: not a readable run configuration ({exc}); repair it or move "
                                  "it away (it records the run's history) and resume again") from None
        write_json(self.config, {**config, "dataset_identity": self._identity, "runs": [*history, dict(entry)]},
                   overwrite=True)

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
        record([self.metrics])  # the record stays current: a killed run's --overwrite still finds its files
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
    """Warn when a resumed run continues on a copy of its dataset at another path (a changed dataset is
    refused before: `RunDirectory.check`)."""
    before = (resumed.meta.get("dataset") or {}).get("path")
    if before and before != data_meta.get("path"):
        log.warning("resuming %s on the dataset %s; it was trained on %s until step %d",
                    resumed.path.name, data_meta.get("path"), before, resumed.step)
