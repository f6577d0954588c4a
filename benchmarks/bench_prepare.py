"""`gantlitz prepare` at the paper's scale: 8K scans cropped to 6144x4096, for 1, 2, 4, 8 ... subjects.

Reports wall time, seconds per subject and peak memory (the prepare process's maximum RSS, and the
sampled sum over it and its worker processes) for each count, and how fast each image reader decodes an
8K map in each input format (`--readers`).

Inputs are built from the bundled Lee Perry-Smith scan (CC BY 3.0, see gantlitz/data/head): its albedo,
specular and normal maps upscaled to 8192x8192, with seeded film grain, and per subject a different
albedo tint and specular gain, written as 8-bit JPEG (quality 95) or ``--format png16|exr|tif`` (16-bit
files get random low bits, as real 16-bit scans carry noise there: the worst case for compression).  The
crop is the one a user with such scans passes: ``--crop 1024,2048,6144,4096``; ``--mask`` adds the head's
UV mask as SRC/mask.png (each file is then decoded once instead of twice).

    python benchmarks/bench_prepare.py --work /tmp/bench-prepare --counts 1 2 4 8 --readers \\
        --out benchmarks/prepare.md
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
from machine import describe

from gantlitz import imageio
from gantlitz.data.synth import HEAD_FILES, SCAN_FILES, find_scan_dir, packaged_head_dir

SIZE = 8192
"""Input side (square) by default; the crop keeps the paper's proportions: 6144x4096 of 8192x8192."""


def crop_for(size: int) -> str:
    """X,Y,W,H of the paper's crop scaled to `size` (1024,2048,6144,4096 at 8192)."""
    return ",".join(str(v * size // 8) for v in (1, 2, 6, 4))
SUFFIX = {"jpg": ".jpg", "png16": ".png", "exr": ".exr", "tif": ".tif"}


def _write(path: Path, pixels: np.ndarray, fmt: str) -> None:
    """Write uint8 H x W x C pixels in the benchmark's input format (straight through OpenImageIO)."""
    h, w, c = pixels.shape
    if fmt in ("jpg", "png8"):
        spec, data = oiio.ImageSpec(w, h, c, oiio.UINT8), pixels
        spec.attribute("CompressionQuality", 95)
    elif fmt == "exr":
        spec, data = oiio.ImageSpec(w, h, c, oiio.HALF), pixels.astype(np.float32) / 255.0
        spec.attribute("compression", "zip")
    else:  # 16-bit PNG / TIFF: the 8-bit values widened, plus the low bits real scans carry
        spec = oiio.ImageSpec(w, h, c, oiio.UINT16)
        data = pixels.astype(np.uint16) * 256
        data += np.random.default_rng(0).integers(0, 256, size=data.shape, dtype=np.uint16)
        if fmt == "tif":
            spec.attribute("compression", "zip")
    out = oiio.ImageOutput.create(str(path))
    if out is None or not out.open(str(path), spec) or not out.write_image(data) or not out.close():
        raise RuntimeError(f"{path}: {oiio.geterror()}")


def _upscaled(name: str, cache: Path, size: int) -> np.ndarray:
    """One bundled map at size x size uint8 RGB (cached: the resize to 8K takes ~10 s)."""
    cached = cache / f"base_{name}{'' if size == SIZE else f'_{size}'}.npy"
    if cached.is_file():
        return np.load(cached)
    try:  # the full-resolution scan (1024²) when this checkout sees it, else the packaged 512² copy
        source = find_scan_dir() / SCAN_FILES[name]
    except FileNotFoundError:
        source = packaged_head_dir() / HEAD_FILES[name]
    buf = oiio.ImageBuf(str(source))
    big = oiio.ImageBufAlgo.resize(buf, roi=oiio.ROI(0, size, 0, size, 0, 1, 0, 3))
    pixels = np.clip(np.asarray(big.get_pixels(oiio.FLOAT)) * 255.0 + 0.5, 0, 255).astype(np.uint8)[:, :, :3]
    np.save(cached, pixels)
    return pixels


def make_inputs(work: Path, subjects: int, fmt: str, size: int) -> Path:
    """SRC with `subjects` folders of albedo / specular / normal maps at size² (existing ones are kept)."""
    src = work / f"src-{fmt}{'' if size == SIZE else f'-{size}'}"
    base = {k: _upscaled(k, work, size) for k in ("albedo", "specular", "normal")}
    for k in range(subjects):
        folder = src / f"subject{k:03d}"
        if folder.is_dir() and len(list(folder.iterdir())) == 3:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(k)
        tint = np.array([1.0, 0.9 + 0.02 * k, 0.85 + 0.03 * k], np.float32)
        for name, gain in (("albedo", tint), ("specular", np.float32(0.7 + 0.05 * k)), ("normal", None)):
            pixels = base[name].astype(np.int16)
            if gain is not None:
                pixels = (pixels * gain).astype(np.int16)
                pixels += rng.integers(-3, 4, size=pixels.shape, dtype=np.int16)  # grain
            _write(folder / f"{name}{SUFFIX[fmt]}", np.clip(pixels, 0, 255).astype(np.uint8), fmt)
        print(f"  input subject {k} written", flush=True)
    return src


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, AttributeError):
            continue
    return total


_CHILD = """import resource, sys
from gantlitz.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("MAXRSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""
"""The CLI in a child that reports its own peak RSS (kB) at exit."""


def run_prepare(src: Path, out: Path, workers: int, size: int) -> dict:
    """One `gantlitz prepare` in a child process: wall time, max RSS, sampled tree peak, stage times."""
    cmd = [sys.executable, "-c", _CHILD, "prepare", str(src), str(out), "--crop", crop_for(size),
           "--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"tree": 0}

    def sample() -> None:
        while proc.poll() is None:
            peak["tree"] = max(peak["tree"], _tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")
    stages = {m[0]: float(m[1]) for m in re.findall(r"INFO (\w+): \d+ subject\(s\) in ([\d.]+) s", stderr)}
    maxrss = int(re.search(r"MAXRSS (\d+)", stderr).group(1)) * 1024
    return {"wall_s": wall, "maxrss": maxrss, "tree_peak": peak["tree"], "stages": stages, "stdout": stdout.strip()}


def make_mask(work: Path, size: int) -> Path:
    """The packaged head's UV mask at size x size (PNG), as a user with scans would pass it."""
    path = work / f"mask{'' if size == SIZE else f'_{size}'}.png"
    if not path.is_file():
        buf = oiio.ImageBuf(str(packaged_head_dir() / HEAD_FILES["mask"]))
        big = oiio.ImageBufAlgo.resize(buf, roi=oiio.ROI(0, size, 0, size, 0, 1, 0, 1))
        pixels = (np.asarray(big.get_pixels(oiio.FLOAT))[:, :, :1] > 0.5).astype(np.uint8) * 255
        _write(path, pixels, "png8")
    return path


def bench_counts(work: Path, counts: list[int], fmt: str, workers: int, with_mask: bool, size: int) -> list[dict]:
    src_all = make_inputs(work, max(counts), fmt, size)
    rows = []
    for n in counts:
        src = work / f"{src_all.name}-{n}"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir()
        for k in range(n):
            (src / f"subject{k:03d}").symlink_to(src_all / f"subject{k:03d}")
        if with_mask:
            (src / "mask.png").symlink_to(make_mask(work, size))
        out = work / f"ds-{n}"
        shutil.rmtree(out, ignore_errors=True)
        res = run_prepare(src, out, workers, size)
        store_bytes = (out / "textures.npy").stat().st_size + (out / "preview.npy").stat().st_size
        shutil.rmtree(out)
        row = {"subjects": n, "size": size, "format": fmt, "mask": "file" if with_mask else "derived",
               "workers": workers, "wall_s": round(res["wall_s"], 1),
               "s_per_subject": round(res["wall_s"] / n, 1),
               "stage_s_per_subject": {k: round(v / n, 2) for k, v in res["stages"].items()},
               "maxrss_gb": round(res["maxrss"] / 1e9, 2), "tree_peak_gb": round(res["tree_peak"] / 1e9, 2),
               "store_gb_per_subject": round(store_bytes / n / 1e9, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _reader_oiio(path: Path, native: bool) -> np.ndarray:
    return imageio.read_image(path, native=native)


def bench_readers(work: Path) -> list[dict]:
    """Decode one 8K RGB map per format with each reader; 'correct' = the same values as OpenImageIO."""
    rows = []
    pixels = _upscaled("albedo", work, SIZE)
    folder = work / "readers"
    folder.mkdir(exist_ok=True)
    readers = {"OpenImageIO (file's type)": lambda p: _reader_oiio(p, True),
               "OpenImageIO (float32)": lambda p: _reader_oiio(p, False)}
    try:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None
        readers["Pillow"] = lambda p: np.asarray(Image.open(p))
    except ImportError:
        pass
    try:
        import tifffile

        readers["tifffile"] = lambda p: tifffile.imread(p)
    except ImportError:
        pass
    for fmt in ("jpg", "png16", "exr", "tif"):
        path = folder / f"albedo{SUFFIX[fmt]}"
        if not path.is_file():
            _write(path, pixels, fmt)
        reference = imageio.read_image(path)
        for name, read in readers.items():
            if name == "Pillow" and fmt == "exr" or name == "tifffile" and fmt != "tif":
                continue
            best, values = float("inf"), None
            for _ in range(3):
                start = time.perf_counter()
                values = read(path)
                best = min(best, time.perf_counter() - start)
            unit = imageio.to_unit_float(np.asarray(values).reshape(reference.shape[0], reference.shape[1], -1))
            correct = unit.shape == reference.shape and float(np.abs(unit - reference).max()) <= 1.5 / 65535
            why = "" if correct else f" ({np.asarray(values).dtype}, {unit.shape[2]} ch: not the file's values)"
            row = {"format": fmt, "reader": name, "seconds": round(best, 2), "dtype": str(np.asarray(values).dtype),
                   "correct": correct, "note": why.strip(" ()"), "file_mb": round(path.stat().st_size / 1e6, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (inputs are cached here)")
    ap.add_argument("--counts", type=int, nargs="*", default=[1, 2, 4, 8], help="subject counts (none: skip)")
    ap.add_argument("--format", choices=sorted(SUFFIX), default="jpg")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--size", type=int, default=SIZE, help="input side in pixels (a multiple of 512)")
    ap.add_argument("--mask", action="store_true", help="give SRC a mask.png (else prepare derives the mask)")
    ap.add_argument("--readers", action="store_true", help="also time the image readers on 8K maps")
    ap.add_argument("--out", type=Path, default=None, help="append the markdown tables to this file")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    text = [f"## prepare ({time.strftime('%Y-%m-%d')})", "", describe("cpu"), "",
            f"Command: `python benchmarks/bench_prepare.py {' '.join(sys.argv[1:])}`", ""]
    if args.counts:
        rows = bench_counts(args.work, args.counts, args.format, args.workers, args.mask, args.size)
        text += ["| subjects | input | format | mask | workers | wall s | s per subject "
                 "| check / write / finalise s per subject | peak RSS GB (process / with workers, sampled) "
                 "| store GB per subject |", "|---" * 10 + "|"]
        for r in rows:
            st = r["stage_s_per_subject"]
            stages = " / ".join(f"{st.get(k, 0):.1f}" for k in ("check", "write", "finalise"))
            text.append(f"| {r['subjects']} | {r['size']}² | {r['format']} | {r['mask']} | {r['workers']} "
                        f"| {r['wall_s']} | {r['s_per_subject']} | {stages} | {r['maxrss_gb']} / {r['tree_peak_gb']} "
                        f"| {r['store_gb_per_subject']} |")
        text.append("")
    if args.readers:
        rows = bench_readers(args.work)
        text += ["| format | file MB | reader | seconds | samples | same values as the file |", "|---" * 6 + "|"]
        text += [f"| {r['format']} | {r['file_mb']} | {r['reader']} | {r['seconds']} | {r['dtype']} | "
                 f"{'yes' if r['correct'] else 'no: ' + r['note']} |" for r in rows]
        text.append("")
    report = "\n".join(text)
    print(report)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write(report + "\n")


if __name__ == "__main__":
    main()
