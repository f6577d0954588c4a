"""Studio latency: time to the first thumbnail grid, tile latency, 3D-preview readiness, over HTTP and in a browser.

    python benchmarks/bench_studio.py --preset tiny --device cpu --threads 1
    python benchmarks/bench_studio.py --run gantlitz-demo/run --device cpu
    python benchmarks/bench_studio.py --preset gantlitz-l --device cuda

A live server (uvicorn on 127.0.0.1, a free port) over random weights of the preset (speed does not depend
on training) or over a trained --run. HTTP figures are wall clock from request to the last byte, with four
requests in flight as the page keeps them:

- grid: the page's 12 albedo thumbnails of a fresh server (every one synthesised);
- tile: one 1:1 tile of a new identity (its row of patches synthesised), a neighbour from the same row
  (synthesis cached), the same tile again (PNG cached), and the level-0 tile (the whole canvas);
- preview: /api/preview.glb of a new identity (all passes, the maps at preview size, the exporter) and of
  an identity whose passes are cached.

With Chromium and Playwright installed, --browser also times what a user sees: page load to a full grid,
a click on a thumbnail to the lit head drawn, and "1:1" to every visible tile shown.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import torch
from bench_generate import make_model
from machine import describe, short_name

import gantlitz
from gantlitz.studio import create_app, running
from gantlitz.studio.pyramid import Pyramid


def fetch(url: str) -> float:
    """Seconds from the request to the last byte."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        response.read()
    return time.perf_counter() - t0


def grid_seconds(url: str, first_seed: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(fetch, [f"{url}/api/thumb?seed={s}" for s in range(first_seed, first_seed + 12)]))
    return time.perf_counter() - t0


def tile_url(url: str, seed: int, level: int, row: int, col: int) -> str:
    return f"{url}/api/tile?seed={seed}&modality=albedo&level={level}&row={row}&col={col}"


def http_figures(model, repeats: int) -> dict[str, float]:
    """Median seconds of each HTTP measurement, each on identities the server has not seen."""
    out: dict[str, list[float]] = {k: [] for k in ("grid", "tile_cold", "tile_row_cached", "tile_png_cached",
                                                    "tile_level0", "preview_cold", "preview_passes_cached")}
    for r in range(repeats):
        with running(create_app(model)) as url:
            fetch(f"{url}/api/info")
            out["grid"].append(grid_seconds(url, 1000 * r))
            finest = Pyramid(*model.canvas, model.patch_size).finest
            seed = 5000 + r
            out["tile_cold"].append(fetch(tile_url(url, seed, finest, 0, 0)))
            out["tile_row_cached"].append(fetch(tile_url(url, seed, finest, 0, 1)))
            out["tile_png_cached"].append(fetch(tile_url(url, seed, finest, 0, 0)))
            out["tile_level0"].append(fetch(tile_url(url, seed + 100, 0, 0, 0)))
            out["preview_cold"].append(fetch(f"{url}/api/preview.glb?seed={seed + 200}"))
            out["preview_passes_cached"].append(fetch(f"{url}/api/preview.glb?seed={seed + 100}"))
    return {k: statistics.median(v) for k, v in out.items()}


def browser_figures(model) -> dict[str, float] | None:
    """What a user waits for in headless Chromium (None without Playwright or Chromium)."""
    import shutil

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    finest = Pyramid(*model.canvas, model.patch_size).finest
    with running(create_app(model)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--use-angle=swiftshader",
                                                                      "--enable-unsafe-swiftshader"])
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_function("document.getElementById('grid').dataset.loaded === '12'", timeout=600_000)
        grid = time.perf_counter() - t0
        page.wait_for_selector("#three[data-shown='1']", timeout=600_000)
        t1 = time.perf_counter()
        page.click(".thumb[data-seed='7']")
        page.wait_for_selector("#three[data-shown='2']", timeout=600_000)
        preview = time.perf_counter() - t1
        t2 = time.perf_counter()
        page.click("#one")
        page.wait_for_function(f"""(() => {{ const z = document.getElementById('zoom');
            const [a, b] = (z.dataset.tiles || '0/0').split('/');
            return z.dataset.level === '{finest}' && a === b && a !== '0'; }})()""", timeout=600_000)
        zoom = time.perf_counter() - t2
        browser.close()
    return {"page_to_grid": grid, "click_to_lit_head": preview, "one_to_one_tiles": zoom}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--run", default=None, help="A trained run or checkpoint instead of random weights.")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    ap.add_argument("--repeats", type=int, default=3, help="Fresh servers per HTTP figure (median).")
    ap.add_argument("--browser", action="store_true", help="Also time the page in headless Chromium.")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = gantlitz.load(args.run, device=device) if args.run else make_model(args.preset, device, "auto", None, False)
    print(f"# {datetime.date.today()}, {describe(device)}")
    print(f"# {shlex.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"# {model.name}: canvas {model.canvas[1]}x{model.canvas[0]}, patch {model.patch_size}, {model.device}")
    figures = http_figures(model, args.repeats)
    browser = browser_figures(model) if args.browser else None
    print("| machine | grid (12 thumbs) | tile cold | tile, row cached | tile, PNG cached | level-0 tile "
          "| preview .glb cold | preview, passes cached |")
    print("|---|---|---|---|---|---|---|---|")
    ms = [f"{figures[k] * 1000:.0f} ms" for k in ("grid", "tile_cold", "tile_row_cached", "tile_png_cached",
                                                   "tile_level0", "preview_cold", "preview_passes_cached")]
    print(f"| {short_name(device)} | " + " | ".join(ms) + " |")
    if browser is not None:
        print("\n| browser: page → full grid | click → lit head drawn | 1:1 → tiles shown |\n|---|---|---|")
        print("| " + " | ".join(f"{v * 1000:.0f} ms" for v in browser.values()) + " |")
    elif args.browser:
        print("\n(browser figures skipped: Playwright or Chromium missing)")


if __name__ == "__main__":
    main()
