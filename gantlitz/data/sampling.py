"""Which patches training sees (paper §4.4): masked location grid, grouped batches, a torch Dataset.

Batches are a pure function of (seed, step): a resumed run at ``start_step`` sees exactly the batches an
uninterrupted run would have seen.  Each batch is ``batch_size / group_size`` groups of ``group_size``
consecutive samples sharing one random location (the discriminator's minibatch-stddev groups); within a
group every sample draws its own subject and flip.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import geometry
from ..config import DATA_CHANNELS
from .store import PatchStore, bits_to_network

__all__ = [
    "training_locations",
    "inference_tiles",
    "GroupedBatchSampler",
    "PatchDataset",
    "patch_loader",
    "GlobalDataset",
    "training_loader",
]

Key = tuple[int, int, int, bool]
"""(subject, top, left, flip)"""


def training_locations(mask: np.ndarray, patch: int, stride: int | None = None) -> list[tuple[int, int]]:
    """`geometry.patch_grid` corners (default 50 % overlap) whose patch overlaps the visible mask.

    6144 x 4096 with 512-pixel patches: 23 x 15 = 345 corners before filtering.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {m.shape}")
    h, w = m.shape
    grid = geometry.patch_grid(h, w, patch, stride)
    # Summed-area table: visible pixels per patch in O(1).
    sat = np.zeros((h + 1, w + 1), np.int64)
    sat[1:, 1:] = (m > 0).cumsum(0).cumsum(1)
    locs = []
    for top, left in grid:
        count = sat[top + patch, left + patch] - sat[top, left + patch] - sat[top + patch, left] + sat[top, left]
        if count > 0:
            locs.append((top, left))
    if not locs:
        raise ValueError("no patch location overlaps the mask (is the mask empty?)")
    return locs


def inference_tiles(canvas_h: int, canvas_w: int, patch: int) -> list[tuple[int, int]]:
    """Non-overlapping tiles of the canvas (12 x 8 = 96 for 6144 x 4096 at 512)."""
    return geometry.patch_grid(canvas_h, canvas_w, patch, stride=patch)


class GroupedBatchSampler:
    """Infinite (or ``steps``-long) sequence of batches of sample keys (subject, top, left, flip).

    ``batch_at(step)`` depends only on (seed, step, locations, num_subjects, sizes, flip).  Iteration
    starts at ``start_step``.
    """

    def __init__(
        self,
        locations: Sequence[tuple[int, int]],
        num_subjects: int,
        batch_size: int,
        group_size: int = 2,
        *,
        seed: int = 0,
        start_step: int = 0,
        flip: bool = True,
        steps: int | None = None,
    ):
        if not locations:
            raise ValueError("no patch locations")
        if num_subjects < 1:
            raise ValueError("num_subjects must be >= 1")
        if group_size < 1 or batch_size < 1 or batch_size % group_size:
            raise ValueError(f"batch_size {batch_size} must be a positive multiple of group_size {group_size}")
        if start_step < 0 or (steps is not None and steps < start_step):
            raise ValueError(f"start_step {start_step} must lie in [0, steps={steps}]")
        self.locations = [(int(t), int(l)) for t, l in locations]
        self.num_subjects = int(num_subjects)
        self.batch_size = int(batch_size)
        self.group_size = int(group_size)
        self.seed = int(seed)
        self.start_step = int(start_step)
        self.flip = bool(flip)
        self.steps = steps

    def batch_at(self, step: int) -> list[Key]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, int(step), 0x9A7C4]))
        groups = self.batch_size // self.group_size
        loc_idx = rng.integers(len(self.locations), size=groups)
        subjects = rng.integers(self.num_subjects, size=self.batch_size)
        flips = rng.integers(2, size=self.batch_size) if self.flip else np.zeros(self.batch_size, np.int64)
        batch = []
        for i in range(self.batch_size):
            top, left = self.locations[loc_idx[i // self.group_size]]
            batch.append((int(subjects[i]), top, left, bool(flips[i])))
        return batch

    def __iter__(self) -> Iterator[list[Key]]:
        step = self.start_step
        while self.steps is None or step < self.steps:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless sampler has no length (pass steps=)")
        return self.steps - self.start_step


class PatchDataset(Dataset):
    """Patches of a `PatchStore` as dicts {"image": (5, P, P) float32 in [-1, 1], "top", "left",
    "subject", "flip"}.

    Indexed by a key (subject, top, left, flip) (what `GroupedBatchSampler` yields) or by an int
    enumerating subjects x locations x flips.  Picklable: worker processes reopen the memory map.
    With ``raw=True`` batches carry the stored values instead ("image": (B, P, P, 5) int16 holding the
    uint16 bits, "mask": (B, P, P) uint8): workers only copy memory, half the bytes cross to the main
    process, and `raw_to_network` converts on the training device.
    """

    def __init__(
        self,
        store: PatchStore | str | os.PathLike,
        patch: int,
        locations: Sequence[tuple[int, int]] | None = None,
        flip: bool | None = None,
        raw: bool = False,
    ):
        self.store = store if isinstance(store, PatchStore) else PatchStore(store)
        h, w = self.store.canvas
        if h % patch or w % patch:
            raise ValueError(
                f"patch size {patch} does not divide the dataset canvas {w}x{h} ({self.store.path / 'manifest.json'})"
            )
        self.patch = int(patch)
        self.flip = self.store.flip if flip is None else bool(flip)
        self.raw = bool(raw)
        self.locations = list(locations) if locations is not None else training_locations(self.store.mask, patch)

    def __len__(self) -> int:
        return len(self.store.subjects) * len(self.locations) * (2 if self.flip else 1)

    def key(self, index: int) -> Key:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range ({n} patches)")
        index %= n
        flips = 2 if self.flip else 1
        index, f = divmod(index, flips)
        subject, loc = divmod(index, len(self.locations))
        top, left = self.locations[loc]
        return subject, top, left, bool(f)

    def _check_flip(self, flip: bool) -> None:
        if flip and not self.flip:
            raise ValueError(f"{self.store.path}: flipping is off for this dataset")

    def __getitems__(self, keys: Sequence[int | Key]) -> dict[str, torch.Tensor]:
        """A whole batch at once (DataLoader's batched fetch): patches are written straight into one
        batch tensor, in shared memory when called in a worker process (no stack / copy)."""
        keys = [self.key(int(k)) if isinstance(k, (int, np.integer)) else k for k in keys]
        b, p = len(keys), self.patch
        in_worker = torch.utils.data.get_worker_info() is not None
        batch = {
            "top": torch.tensor([int(k[1]) for k in keys]),
            "left": torch.tensor([int(k[2]) for k in keys]),
            "subject": torch.tensor([int(k[0]) for k in keys]),
            "flip": torch.tensor([bool(k[3]) for k in keys]),
        }
        if self.raw:
            images = _empty((b, p, p, DATA_CHANNELS), torch.int16, in_worker)
            masks = _empty((b, p, p), torch.uint8, in_worker)
            view, mask_view = images.numpy().view(np.uint16), masks.numpy()
            for i, (subject, top, left, flip) in enumerate(keys):
                self._check_flip(flip)
                self.store.read_patch_raw(subject, top, left, p, flip=bool(flip), out=view[i])
                mask_view[i] = self.store.mask[top : top + p, left : left + p]
            return {"image": images, "mask": masks, **batch}
        images = _empty((b, DATA_CHANNELS, p, p), torch.float32, in_worker)
        view = images.numpy()
        for i, (subject, top, left, flip) in enumerate(keys):
            self._check_flip(flip)
            self.store.read_patch(subject, top, left, p, flip=bool(flip), out=view[i])
        return {"image": images, **batch}

    def __getitem__(self, key: int | Key) -> dict[str, object]:
        if isinstance(key, (int, np.integer)):
            key = self.key(int(key))
        subject, top, left, flip = key
        self._check_flip(flip)
        image = self.store.read_patch(subject, top, left, self.patch, flip=bool(flip))
        return {
            "image": torch.from_numpy(image),
            "top": int(top),
            "left": int(left),
            "subject": int(subject),
            "flip": bool(flip),
        }


def raw_to_network(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """A raw batch ((B, P, P, 5) int16 bits of uint16, (B, P, P) uint8 masks) → (B, 5, P, P) float32 in
    [-1, 1], masked: exactly what `PatchStore.read_patch` returns, computed on the tensors' device."""
    x = bits_to_network(images).permute(0, 3, 1, 2)
    return (x * masks[:, None].to(torch.float32)).contiguous()


def _empty(shape: tuple[int, ...], dtype: torch.dtype, shared: bool) -> torch.Tensor:
    """An uninitialised tensor, in shared memory when it will cross from a worker process."""
    out = torch.empty(shape, dtype=dtype)
    return out.share_memory_() if shared else out


def _batched(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """collate_fn for `PatchDataset.__getitems__`, which already returns a collated batch."""
    return batch


def patch_loader(
    store: PatchStore | str | os.PathLike,
    patch: int,
    batch_size: int,
    group_size: int = 2,
    *,
    seed: int = 0,
    start_step: int = 0,
    steps: int | None = None,
    workers: int = 2,
    flip: bool | None = None,
    locations: Sequence[tuple[int, int]] | None = None,
    pin_memory: bool = False,
    raw: bool = False,
) -> DataLoader:
    """A DataLoader of grouped training batches (dict of batched tensors) starting at ``start_step``;
    ``raw`` batches are converted on the device with `raw_to_network`."""
    ds = PatchDataset(store, patch, locations=locations, flip=flip, raw=raw)
    sampler = GroupedBatchSampler(
        ds.locations, len(ds.store.subjects), batch_size, group_size,
        seed=seed, start_step=start_step, flip=ds.flip, steps=steps,
    )
    return DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=_batched,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
    )


class GlobalDataset(torch.utils.data.Dataset):
    """Whole textures resized to R×R (the mmstylegan2-ada baseline), keyed like `PatchDataset`
    by (subject, top, left, flip) with top = left = 0."""

    def __init__(self, store: Any, resolution: int) -> None:
        self.store = store
        self.resolution = int(resolution)

    def __len__(self) -> int:
        return len(self.store.subjects)

    def __getitem__(self, key: Any) -> dict[str, Any]:
        subject, _top, _left, flip = key if isinstance(key, tuple) else (int(key), 0, 0, False)
        r = self.resolution
        image = self.store.read_whole(subject, r, r, flip=bool(flip))
        return {"image": torch.from_numpy(np.ascontiguousarray(image)), "top": 0, "left": 0,
                "subject": int(subject), "flip": bool(flip)}


def training_loader(store: Any, preset: Any, *, seed: int, start_step: int, steps: int, pin: bool) -> Any:
    """The run's batches from `start_step`: grouped patches, or whole textures for the global baseline
    (a `Preset`'s train settings; the sampler is a pure function of (seed, step))."""
    cfg = preset.train
    flip = bool(cfg.flip and store.flip)
    if preset.global_res is None:
        p = preset.model.patch_size
        return patch_loader(store, p, cfg.batch, cfg.group_size, seed=seed, start_step=start_step, steps=steps,
                            workers=cfg.workers, flip=flip, pin_memory=pin, raw=True,
                            locations=training_locations(store.mask, p, cfg.location_stride))
    sampler = GroupedBatchSampler([(0, 0)], len(store.subjects), cfg.batch, cfg.group_size, seed=seed,
                                  start_step=start_step, flip=flip, steps=steps)
    return torch.utils.data.DataLoader(
        GlobalDataset(store, preset.global_res), batch_sampler=sampler, num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0, pin_memory=pin, prefetch_factor=4 if cfg.workers > 0 else None,
    )
