"""Random 512x512x5 patch reads from the prepared store: `PatchStore.read_patch` (float32, masked),
`read_patch_raw` (stored uint16) and the DataLoader (`gantlitz.data.patch_loader`, grouped batches,
worker processes) in both forms — training uses the raw one and decodes on the device — warm and cold
page cache.

The store (default 8 subjects at 6144x4096, ~2 GB) is written directly in the store format with
random-ish uint16 data (smooth noise + grain: compressibility does not matter for an uncompressed memory
map), unless --store points at an existing one.  Cold-cache runs need root (``/proc/sys/vm/drop_caches``);
without it the script falls back to ``posix_fadvise(DONTNEED)`` on the store's files.

    python benchmarks/bench_patch_reads.py --store /tmp/bench-store --out benchmarks/patch_reads.md --delete
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from machine import describe

from gantlitz.config import MODALITY_CHANNELS
from gantlitz.data.sampling import GroupedBatchSampler, patch_loader, training_locations
from gantlitz.data.store import STORE_FORMAT, STORE_VERSION, PatchStore


def make_store(path: Path, subjects: int, height: int, width: int) -> None:
    """Write a synthetic store (random-ish uint16, elliptical mask) straight in the store format."""
    tmp = path.parent / f".{path.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tex = np.lib.format.open_memmap(tmp / "textures.npy", mode="w+", dtype=np.uint16,
                                    shape=(subjects, height, width, 5))
    rows = 256
    base = rng.integers(0, 65536, size=(rows, width, 5), dtype=np.uint16)
    for s in range(subjects):
        for r in range(0, height, rows):
            tex[s, r : r + rows] = base + np.uint16((s * 977 + r) % 65536)  # wraps: random-ish everywhere
    tex.flush()
    del tex
    ph, pw = round(height * 1024 / max(height, width)), round(width * 1024 / max(height, width))
    prev = np.lib.format.open_memmap(tmp / "preview.npy", mode="w+", dtype=np.uint16, shape=(subjects, ph, pw, 5))
    prev[:] = 32768
    prev.flush()
    del prev
    yy, xx = np.mgrid[0:height, 0:width]
    mask = (((yy - height / 2) / (0.48 * height)) ** 2 + ((xx - width / 2) / (0.48 * width)) ** 2 <= 1)
    np.save(tmp / "mask.npy", mask.astype(np.uint8))
    manifest = {
        "format": STORE_FORMAT, "version": STORE_VERSION, "canvas": {"height": height, "width": width},
        "modalities": dict(MODALITY_CHANNELS), "subjects": [f"bench{i:03d}" for i in range(subjects)],
        "displacement_scale": 10.0, "normal_convention": "opengl", "flip": True, "crop": None,
        "mask": "synthetic ellipse", "preview": {"height": ph, "width": pw}, "dtype": "uint16",
        "note": "benchmark store: random-ish uint16 written directly in the store format",
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)


def drop_cache(store: Path) -> str:
    """Evict the store from the page cache; returns the method used."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        for f in store.iterdir():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return "fadvise"


def bench_reads(store_path: Path, n: int, patch: int, seed: int, raw: bool = False) -> float:
    store = PatchStore(store_path)
    read = store.read_patch_raw if raw else store.read_patch
    locs = training_locations(store.mask, patch)
    sampler = GroupedBatchSampler(locs, len(store.subjects), 8, 2, seed=seed)
    keys = [k for step in range((n + 7) // 8) for k in sampler.batch_at(step)][:n]
    t0 = time.perf_counter()
    for s, t, l, f in keys:
        read(s, t, l, patch, f)
    return n / (time.perf_counter() - t0)


def bench_loader(store_path: Path, n: int, patch: int, seed: int, workers: int, batch: int, raw: bool) -> float:
    steps = max(1, n // batch)
    loader = patch_loader(store_path, patch, batch, 2, seed=seed, steps=steps + 2, workers=workers, raw=raw)
    it = iter(loader)
    next(it)  # worker start-up is not a read cost
    next(it)
    t0 = time.perf_counter()
    count = 0
    for b in it:
        count += b["image"].shape[0]
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path("/tmp/gantlitz-bench-store"))
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--size", default="6144x4096", help="WxH")
    ap.add_argument("--patch", type=int, default=512)
    ap.add_argument("--reads", type=int, default=2000, help="patches per warm measurement")
    ap.add_argument("--cold-reads", type=int, default=400, help="patches per cold measurement")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    ap.add_argument("--delete", action="store_true", help="delete the store afterwards")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))

    created = False
    if not (args.store / "manifest.json").is_file():
        t0 = time.perf_counter()
        make_store(args.store, args.subjects, h, w)
        created = True
        print(f"created {args.store} in {time.perf_counter() - t0:.1f} s")
    store = PatchStore(args.store)
    size_gb = (args.store / "textures.npy").stat().st_size / 1e9
    info = describe("cpu")
    print(info)
    rows = []
    try:
        # warm: read everything once so the store sits in the page cache
        bench_reads(args.store, args.reads, args.patch, seed=99)
        loader = f"DataLoader (workers {args.workers}, batch {args.batch})"
        for cold, n, seed in ((False, args.reads, 1), (True, args.cold_reads, 3)):
            for raw in (False, True):
                label = "raw uint16 (training path)" if raw else "float32, masked"
                runs = (
                    (f"read_patch{'_raw' if raw else ''}", lambda: bench_reads(args.store, n, args.patch, seed, raw)),
                    (loader, lambda: bench_loader(args.store, n, args.patch, seed + 10, args.workers, args.batch, raw)),
                )
                for name, run in runs:
                    cache = f"cold ({drop_cache(args.store)})" if cold else "warm"
                    rows.append((f"{name} — {label}", cache, run()))
    finally:
        if args.delete:
            shutil.rmtree(args.store, ignore_errors=True)
            print(f"deleted {args.store}" + (" (created by this run)" if created else ""))
    hh, ww = store.canvas
    table = [
        f"Random {args.patch}x{args.patch}x5 uint16 patch reads, {len(store.subjects)} subjects at {ww}x{hh} "
        f"({size_gb:.2f} GB, `.npy` memory map), training-grid locations, random subject and flip.",
        "",
        f"Machine: {info}",
        "",
        "| path | cache | patches/s |",
        "|---|---|---|",
        *[f"| {name} | {cache} | {rate:,.0f} |" for name, cache, rate in rows],
    ]
    text = "\n".join(table)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
