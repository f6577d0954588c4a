"""`gantlitz prepare`: raw scans → the memory-mapped patch store (paper §3, docs/data.md).

One subject is in memory at a time, so peak memory does not grow with the number of subjects, and every
finished subject is journaled in the hidden staging folder ``.OUT.partial`` (`staging.Staging`), so a
prepare that is killed continues with ``resume=True`` (``--resume``) and ends with the same store.
Three passes:

1. **check** (only when the mask is derived, not given as a file) decodes and checks every file and
   ORs each subject's visible pixels into the mask;
2. **write** decodes (again, after a check), checks, integrates the normals into height over the final
   mask, writes albedo and specular (and previews) and keeps the float height;
3. **finalise** knows the one dataset-wide displacement scale (the widest subject's height range maps to
   [0, 1]) and quantises each height into the store.

Every problem of every subject is collected and reported together; the store is then never installed.
The manifest is written last and the store renamed to OUT, so nothing loads until it is complete.
``workers`` runs subjects in parallel processes (memory and speed both scale with it).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Container, Sequence

import numpy as np

from .. import __version__, maps
from ..config import MODALITY_CHANNELS
from ..errors import GantlitzError, InputError, OutputError, OutputExistsError, UsageError
from ..outputs import check_apart, check_output_dir, human_bytes, install_dir, make_dirs, write_text, writing
from ..resample import resize
from .scans import (Box, PrepareError, Scan, SubjectFiles, common_size, find_subjects, load_subject, parse_crop,
                    read_mask)
from .staging import Staging, fingerprint, fingerprint_changes
from .store import STORE_FORMAT, STORE_VERSION, to_stored

log = logging.getLogger(__name__)

__all__ = ["PrepareError", "SubjectFiles", "find_subjects", "prepare", "STORE_FORMAT", "STORE_VERSION",
           "CANVAS_MULTIPLE", "PREVIEW_MAX", "DATASET_FILES"]

CANVAS_MULTIPLE = 64
"""Canvas sides must be multiples of this (the patch size is chosen later, at training time)."""
PREVIEW_MAX = 1024
"""Long side of the whole-texture previews (preview.npy)."""
DATASET_FILES = frozenset({"manifest.json", "textures.npy", "mask.npy", "preview.npy"})
"""What `prepare` writes into OUT (`--overwrite` replaces of them only what OUT's record names)."""
DISPLACEMENT_HEIGHT = (1e-4, 1e5)
"""Canvas pixels per unit of a displacement file: outside this the heights underflow or swamp every other
subject's relief."""
OUTLIER_RATIO = 10.0
"""A subject whose height range exceeds the median subject's by this much would set the dataset-wide
displacement scale alone (flattening every other subject's relief): an error naming it."""


class PrepareStopped(GantlitzError, RuntimeError):
    """The prepare could not go on (a worker process died); what is done is kept for --resume."""


def _preview_size(height: int, width: int) -> tuple[int, int]:
    s = min(1.0, PREVIEW_MAX / max(height, width))
    return max(1, round(height * s)), max(1, round(width * s))




@dataclass(frozen=True)
class _Job:
    """Everything a (possibly separate) worker process needs for one subject's step; picklable."""

    out: Path
    subjects: tuple[SubjectFiles, ...]
    box: Box | None
    convention: str
    displacement_height: float
    canvas: tuple[int, int]
    preview: tuple[int, int]
    threads: int

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.subjects]

    def todo(self, done: Container[str]) -> list[int]:
        """Indices of the subjects a pass has still to do (``done``: the names its journal lists)."""
        return [i for i, s in enumerate(self.subjects) if s.name not in done]

    def load(self, i: int) -> tuple[Scan | None, list[str]]:
        return load_subject(self.subjects[i], self.box, self.displacement_height)


# -- the three per-subject steps (module level: worker processes import them) ----------------------
def _check_step(job: _Job, i: int) -> tuple[list[str], np.ndarray | None]:
    """Problems of subject i, or its visible pixels (bit-packed: small to send between processes)."""
    scan, problems = job.load(i)
    return problems, None if scan is None else np.packbits(scan.visible())


def _write_step(job: _Job, i: int) -> tuple[list[str], tuple[float, float] | None]:
    """Albedo, specular and previews of subject i into the store, its float height aside; ([], its height
    range), or (its problems, None) with nothing written."""
    scan, problems = job.load(i)
    if scan is None:
        return problems, None
    staging = Staging(job.out)
    vis = staging.mask()
    height = scan.height(vis, job.convention, job.threads)
    inside = height[vis > 0]
    lo, hi = float(inside.min()), float(inside.max())
    _put(staging, "heights.npy", i, (), height)
    del height, inside
    albedo, specular = scan.albedo, scan.specular
    del scan  # the normals go
    colour = np.concatenate([albedo, specular[..., None]], axis=2, dtype=np.float32)
    del albedo, specular
    colour[vis == 0] = 0.5
    _put(staging, "preview.npy", i, np.s_[:, :, :4], to_stored(resize(colour, *job.preview)))
    _put(staging, "textures.npy", i, np.s_[:, :, :4], to_stored(colour, consume=True))
    return [], (lo, hi)


def _finalise_step(job: _Job, i: int, ranges: list[list[float]], scale: float) -> None:
    """Subject i's height → the displacement channel on the dataset-wide scale (idempotent): its own
    range is centred at 0.5."""
    centre = 0.5 * (ranges[i][0] + ranges[i][1])
    staging = Staging(job.out)
    vis = staging.mask()
    heights = staging.open_array("heights.npy")
    disp = 0.5 + (np.asarray(heights[i]) - centre) / scale
    del heights
    disp[vis == 0] = 0.5
    preview = to_stored(resize(disp[..., None], *job.preview))[..., 0]
    _put(staging, "preview.npy", i, np.s_[:, :, 4], preview)
    _put(staging, "textures.npy", i, np.s_[:, :, 4], to_stored(disp, consume=True))


def _put(staging: Staging, name: str, i: int, where: tuple, values: np.ndarray) -> None:
    """Write into one subject's slot and flush; the map is dropped so its pages leave this process."""
    array = staging.open_array(name)
    array[(i, *where)] = values
    array.flush()
    del array


def _init_worker(threads: int) -> None:
    """Each worker process gets its share of the cores (decoders, resizing; the FFTs take `_Job.threads`)."""
    import OpenImageIO as oiio
    import torch

    oiio.attribute("threads", threads)
    torch.set_num_threads(threads)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


class _Runner:
    """Runs one step over the subjects still to do, in this process or a pool, with a progress bar that
    shows the last subject's time and the ETA; results are handed back in completion order."""

    def __init__(self, job: _Job, workers: int, progress: bool) -> None:
        self.job, self.workers, self.progress = job, workers, progress
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "_Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def run(self, desc: str, todo: list[int], fn: Callable[..., Any], *args: Any,
            done: Callable[[int, Any], None]) -> None:
        from tqdm.auto import tqdm

        n, names = len(self.job.subjects), self.job.names
        bar = tqdm(total=n, initial=n - len(todo), desc=desc, unit="subject", disable=not self.progress)
        start = time.perf_counter()
        try:
            for i, (result, seconds) in self._results(todo, fn, args):
                done(i, result)
                bar.set_postfix_str(f"{names[i]} {seconds:.1f} s", refresh=False)
                bar.update()
                log.debug("%s %s: %.1f s", desc, names[i], seconds)
        finally:
            bar.close()
        if todo:
            took = time.perf_counter() - start
            log.info("%s: %d subject(s) in %.1f s (%.1f s per subject, %d worker(s))", desc, len(todo), took,
                     took / len(todo), self.workers)

    def _results(self, todo: list[int], fn: Callable[..., Any], args: tuple):
        if self.workers == 1:
            for i in todo:
                yield i, _timed(fn, self.job, i, *args)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.job.threads,))
        futures = {self._pool.submit(_timed, fn, self.job, i, *args): i for i in todo}
        for future in as_completed(futures):
            if isinstance(future.exception(), BrokenProcessPool):
                raise PrepareStopped(
                    f"a worker process died while preparing {self.job.subjects[futures[future]].name} (out of "
                    f"memory? each worker needs about 2.2 GB for 8K scans): run the same command with --resume "
                    f"and fewer --workers") from future.exception()
            yield futures[future], future.result()


def prepare(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    crop: Sequence[int] | None = None,
    mask: str | os.PathLike | None = None,
    flip: bool = True,
    normal_convention: str = "opengl",
    displacement_height: float = 1.0,
    overwrite: bool = False,
    resume: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Validate ``src`` and write the prepared store to ``out``; returns ``out``.

    ``crop`` is (x, y, w, h) in pixels of the input maps; ``mask`` an image file (first channel > 0.5
    = visible; default ``src/mask.*``, else derived where all maps equal their border fill);
    ``displacement_height`` converts values of displacement files (used when a subject has no normal
    map) into canvas pixels.  ``resume`` continues a prepare of ``out`` that was interrupted (its inputs
    and pixel options must be unchanged); without it an interrupted one is refused, and ``overwrite``
    starts it again.  ``workers`` processes handle subjects in parallel.

    Raises `PrepareError` listing every problem, `OutputExistsError` (a `FileExistsError`) when ``out``
    is not empty and ``overwrite`` is false, is, contains or lies inside an input, or holds files but no
    record of an earlier prepare (``out`` is then left untouched), and `FolderLockedError` while another
    prepare works on ``out``. ``overwrite`` replaces only the files OUT's record names as prepare's and
    that are unchanged since; anything else is kept and listed.
    """
    src, out = Path(src), Path(out).resolve()  # '.', '..' and a symlinked OUT: the folder itself
    _check_options(normal_convention, displacement_height, workers)
    with writing("prepare"):
        return _prepare(src, out, crop=crop, mask=mask, flip=flip, normal_convention=normal_convention,
                        displacement_height=displacement_height, overwrite=overwrite, resume=resume, workers=workers,
                        progress=progress)


def _prepare(src: Path, out: Path, *, crop: Sequence[int] | None, mask: str | os.PathLike | None, flip: bool,
             normal_convention: str, displacement_height: float, overwrite: bool, resume: bool, workers: int,
             progress: bool) -> Path:
    """`prepare` inside its `writing` block."""
    inputs = [src, *([mask] if mask is not None else [])]
    check_apart(out, inputs, what="dataset")  # OUT is no input: checked before staging
    subjects, mask_file, problems = find_subjects(src)
    if mask is not None:
        mask_file = Path(mask)
    height, width = common_size(subjects, mask_file, problems)
    box = parse_crop(crop, height, width)
    canvas = _canvas(box, height, width)
    job = _Job(out, tuple(subjects), box, normal_convention, float(displacement_height), canvas,
               _preview_size(*canvas), -1 if workers == 1 else max(1, len(os.sched_getaffinity(0)) // workers))
    files = {f"{s.name}/{k}": p for s in subjects for k, p in sorted(s.files.items())}
    if mask_file is not None:
        files["mask"] = mask_file
    options = {"crop": list(box) if box else None, "mask": str(Path(mask_file).resolve()) if mask_file else None,
               "normal_convention": normal_convention, "displacement_height": float(displacement_height)}
    stamp = fingerprint(files, options)
    with Staging(out) as staging:
        try:
            journal = staging.load() if resume and staging.exists() else {}
            if resume and journal.get("installing"):  # killed while moving the finished store into OUT
                _check_resumable(staging, stamp, job.names)
            else:
                check_output_dir(out, inputs=inputs, overwrite=overwrite, what="dataset")
                _open_staging(staging, stamp, job, resume=resume, overwrite=overwrite)
                with _Runner(job, int(workers), progress) as runner:
                    mask_source = _mask_pass(staging, job, runner, mask_file, src)
                    _write_pass(staging, job, runner)
                    scale = _finalise_pass(staging, job, runner)
                manifest = _manifest(job, src, (height, width), scale, flip=flip, mask_source=mask_source)
                staging.drop_heights()
                staging.record_store()
                write_text(staging.store / "manifest.json", json.dumps(manifest, indent=2), overwrite=True)
                staging.journal["installing"] = True
                staging.save()
            _install(staging, out)
        except BaseException as exc:
            if isinstance(exc, PrepareError) or not staging.exists():  # bad input, or nothing to resume yet
                staging.remove()
            elif not isinstance(exc, GantlitzError):  # not a refusal: interrupted or failed mid-way
                log.warning("prepare stopped: %s keeps %s; run the same command with --resume to continue",
                            staging.path, staging.summary())
            raise
        staging.remove()
    return out


def _check_options(normal_convention: str, displacement_height: float, workers: int) -> None:
    if normal_convention not in maps.CONVENTIONS:
        raise PrepareError([f"--normal-convention must be one of {maps.CONVENTIONS}, got {normal_convention!r}"])
    lo, hi = DISPLACEMENT_HEIGHT
    if not (math.isfinite(displacement_height) and lo <= displacement_height <= hi):
        raise PrepareError([f"--displacement-height must be a number in [{lo:g}, {hi:g}] canvas pixels per unit, "
                            f"got {displacement_height}"])
    if int(workers) < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")


def _manifest(job: _Job, src: Path, source_size: tuple[int, int], scale: float, *, flip: bool,
              mask_source: Any) -> dict[str, Any]:
    """The dataset's manifest.json (docs/architecture.md, "Prepared dataset")."""
    box, canvas = job.box, job.canvas
    return {
        "format": STORE_FORMAT, "version": STORE_VERSION,
        "canvas": {"height": canvas[0], "width": canvas[1]},
        "modalities": dict(MODALITY_CHANNELS), "subjects": job.names,
        "displacement_scale": float(scale), "normal_convention": job.convention, "flip": bool(flip),
        "crop": list(box) if box else None, "mask": mask_source,
        "preview": dict(zip(("height", "width"), job.preview)), "dtype": "uint16",
        "source": str(src.resolve()), "source_size": {"height": source_size[0], "width": source_size[1]},
        "displacement_height": float(job.displacement_height), "canvas_multiple": CANVAS_MULTIPLE,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gantlitz_version": __version__,
    }


def _canvas(box: Box | None, height: int, width: int) -> tuple[int, int]:
    """(height, width) after the crop, checked against the canvas multiple."""
    ch, cw = (box[3], box[2]) if box else (height, width)
    if ch % CANVAS_MULTIPLE or cw % CANVAS_MULTIPLE:
        raise PrepareError([
            f"canvas {cw}x{ch} (after crop) is not divisible by {CANVAS_MULTIPLE}; pass --crop X,Y,W,H with W and "
            f"H multiples of {CANVAS_MULTIPLE} (training later checks its own patch size against the canvas)"
        ])
    return ch, cw


def _install(staging: Staging, out: Path) -> None:
    """Move the finished store into OUT (manifest last).  Also finishes an install that was killed half-way:
    only what is still staged moves, and nothing already in OUT is removed for being absent."""
    staged = {e.name for e in staging.store.iterdir()} if staging.store.is_dir() else set()
    if not staged:
        return  # a kill after the last move: OUT is complete
    make_dirs(out.parent)
    install_dir(staging.store, out, keep=DATASET_FILES, last="manifest.json" if "manifest.json" in staged else None)


def _check_resumable(staging: Staging, stamp: dict[str, Any], names: list[str]) -> None:
    """Refuse to resume when an input file or a pixel option changed since the interrupted prepare."""
    changes = fingerprint_changes(staging.journal["fingerprint"], stamp)
    if changes or staging.journal["subjects"] != names:
        raise InputError(f"{staging.path}: the inputs differ from the interrupted prepare, which can not be "
                         "resumed:\n" + "\n".join(f"  - {c}" for c in changes or ["the subjects differ"])
                         + "\npass --overwrite (without --resume) to start again")


def _open_staging(staging: Staging, stamp: dict[str, Any], job: _Job, *, resume: bool, overwrite: bool) -> None:
    """Continue the interrupted prepare (resume), refuse to touch it (neither flag) or start afresh."""
    names = job.names
    if staging.exists() and not (overwrite and not resume):
        staging.load()
        if not resume:
            raise OutputExistsError(job.out, f"an interrupted `gantlitz prepare` of it is kept in {staging.path} "
                                             f"({staging.summary()}); pass --resume to continue it, or --overwrite to "
                                             "discard it and start again")
        _check_resumable(staging, stamp, names)
        log.info("resuming the prepare of %s: %s", job.out, staging.summary())
        return
    staging.clear()
    free = shutil.disk_usage(staging.path).free
    need = Staging.bytes_needed(len(names), job.canvas, job.preview)
    if need > free:
        raise OutputError(staging.path.parent, f"not enough disk space: {len(names)} subjects at "
                                               f"{job.canvas[1]}x{job.canvas[0]} need {human_bytes(need)} (the store "
                                               f"and temporary heights), {human_bytes(free)} are free")
    staging.start(stamp, names)


def _mask_pass(staging: Staging, job: _Job, runner: _Runner, mask_file: Path | None, src: Path) -> str:
    """The visibility mask into the store (and the arrays allocated); returns where it came from.

    A mask file is just read: the write pass then checks each scan as it decodes it, so every file is
    decoded once.  A derived mask needs every subject first: pass 1 (check) decodes and checks them all.
    """
    journal = staging.journal
    if mask_file is not None:
        vis, problems = read_mask(mask_file, job.box)
        if problems:
            raise PrepareError(problems)
    if not journal["mask"]:
        if mask_file is None:
            vis = _check_pass(staging, job, runner, src)
        staging.save_mask(vis)
        staging.create_arrays(len(job.subjects), job.canvas, job.preview)
        journal["mask"] = True
        staging.save()
    return "derived" if mask_file is None else str(Path(mask_file).resolve())


def _check_pass(staging: Staging, job: _Job, runner: _Runner, src: Path) -> np.ndarray:
    """Pass 1 (derived masks): every problem of every subject, and the OR of their visible pixels, cleaned."""
    journal = staging.journal
    problems: list[str] = []
    derived = staging.partial_mask(job.canvas)
    todo = job.todo(journal["checked"])

    def done(i: int, result: tuple[list[str], np.ndarray | None]) -> None:
        probs, bits = result
        problems.extend(probs)
        if probs:
            return
        derived[...] |= np.unpackbits(bits, count=derived.size).reshape(derived.shape)
        staging.save_partial_mask(derived)
        journal["checked"].append(job.subjects[i].name)
        staging.save()

    runner.run("check", todo, _check_step, done=done)
    if problems:
        raise PrepareError(problems)
    vis = maps.clean_mask(derived, min_island=max(16, int(1e-4 * derived.size)))
    if not vis.any():
        raise PrepareError([f"{src}: the derived mask is empty (all maps equal their border value); pass --mask"])
    return vis


def _write_pass(staging: Staging, job: _Job, runner: _Runner) -> None:
    """Pass 2: albedo, specular, previews and the float heights; each subject's range is journaled.  Every
    problem found while decoding is collected and raised at the end (the store is then never installed)."""
    written = staging.journal["written"]
    todo = job.todo(written)
    problems: list[str] = []

    def done(i: int, result: tuple[list[str], tuple[float, float] | None]) -> None:
        probs, rng = result
        problems.extend(probs)
        if rng is not None:
            written[job.subjects[i].name] = list(rng)
            staging.save()

    runner.run("write", todo, _write_step, done=done)
    if problems:
        raise PrepareError(problems)


def _displacement_scale(ranges: list[list[float]], names: list[str]) -> float:
    """The dataset-wide scale (the widest subject's height range), refused when one subject dominates it:
    an all-zero or inside-out normal map integrates to a huge range and would flatten every other relief."""
    spans = np.array([hi - lo for lo, hi in ranges], dtype=np.float64)
    widest = int(np.argmax(spans))
    median = float(np.median(spans))
    if not np.isfinite(spans).all():
        raise PrepareError([f"{names[int(np.argmax(~np.isfinite(spans)))]}: its height range is not finite"])
    if len(spans) > 2 and median > 0 and spans[widest] > OUTLIER_RATIO * median:
        raise PrepareError([f"{names[widest]}: its height range ({spans[widest]:.4g} px) is "
                            f"{spans[widest] / median:.0f}x the median subject's ({median:.4g} px) and would set the "
                            "displacement scale alone, flattening every other subject's relief; check its normal or "
                            "displacement map (or leave the subject out)"])
    scale = float(spans[widest])
    return scale if scale > 0 else 1.0


def _finalise_pass(staging: Staging, job: _Job, runner: _Runner) -> float:
    """Pass 3: every height on the one displacement scale; returns the scale (canvas px per unit)."""
    journal = staging.journal
    ranges = [journal["written"][s.name] for s in job.subjects]
    scale = _displacement_scale(ranges, job.names)
    finalised = journal["finalised"]
    todo = job.todo(finalised)

    def done(i: int, _: None) -> None:
        finalised.append(job.subjects[i].name)
        staging.save()

    runner.run("finalise", todo, _finalise_step, ranges, scale, done=done)
    return scale
