"""Studio: every endpoint, validation errors, cache and queue bounds, cancellation, exact tiles, downloads, CLI,
and a real browser (headless Chromium through Playwright) against a live server."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import gantlitz
from gantlitz.cli import main
from gantlitz.export import validate_glb
from gantlitz.generate import TextureModel, interpolate_ws
from gantlitz.imageio import read_image
from gantlitz.networks import build
from gantlitz.outputs.mapfiles import OUTPUT_MAPS
from gantlitz.resample import area_downsample, to_uint8
from gantlitz.studio import Limits, create_app, running
from gantlitz.studio.cache import LRUCache
from gantlitz.studio.params import Identity
from gantlitz.studio.pyramid import Pyramid
from gantlitz.studio.worker import Busy, Worker
from helpers import HALF_FLOAT_QUANTISATION, SMALL_PRESET, assert_roundoff_equal, ellipse_mask, save_generator

pytest.importorskip("starlette.testclient")
from starlette.testclient import TestClient  # noqa: E402

SEED, PSI = 3, 0.7
TILE = "/api/tile?seed={seed}&truncation={psi}&modality={m}&level={level}&row={row}&col={col}"


@pytest.fixture(scope="module")
def reference(model: TextureModel) -> dict[str, np.ndarray]:
    """What `gantlitz generate` computes for SEED at PSI."""
    return model.sample(SEED, OUTPUT_MAPS, PSI)


@pytest.fixture()
def client(model: TextureModel, one_thread):
    with TestClient(create_app(model)) as c:
        yield c


def studio_of(c: TestClient):
    return c.app.state.studio


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    arr = np.asarray(Image.open(io.BytesIO(response.content)))
    return arr[:, :, None] if arr.ndim == 2 else arr


def stitch(c: TestClient, modality: str, level: int, query: str = f"seed={SEED}&truncation={PSI}") -> np.ndarray:
    pyramid = studio_of(c).engine.pyramid
    rows, cols = pyramid.level_grid(level)
    return np.concatenate([np.concatenate([png(c.get(f"/api/tile?{query}&modality={modality}&level={level}"
                                                    f"&row={r}&col={col}")) for col in range(cols)], axis=1)
                           for r in range(rows)], axis=0)


def gate(worker: Worker, jobs: int) -> threading.Event:
    """Occupy the worker with `jobs` jobs that wait for the returned event."""
    release = threading.Event()
    for _ in range(jobs):
        worker.submit(release.wait, 10)
    return release


# -------------------------------------------------------------------------------------------- geometry
def test_pyramid_tiles_are_the_patch_grid() -> None:
    p = Pyramid(4096, 6144, 512)
    assert p.levels == 5 and p.factor(0) == 16 and p.level_grid(0) == (1, 1)
    assert p.level_grid(p.finest) == (8, 12) and p.rect(p.finest, 7, 11) == (3584, 5632, 512, 512)
    assert p.rect(1, 0, 1) == (0, 4096, 4096, 2048)  # clipped at the canvas border, whole patches
    assert p.level_for(2048) == 2 and p.level_size(2) == (1024, 1536)
    small = Pyramid(64, 96, 32)
    assert small.levels == 3 and small.level_grid(2) == (2, 3) and small.level_size(0) == (16, 24)


def test_lru_cache_is_bounded_by_bytes() -> None:
    cache: LRUCache[bytes] = LRUCache(100)
    for i in range(5):
        cache.put(i, bytes(30))
    assert len(cache) == 3 and cache.bytes == 90 and cache.get(0) is None and cache.get(4) is not None
    cache.put(2, bytes(30))  # refresh 2, then 5 evicts the oldest: 3
    cache.put(5, bytes(30))
    assert cache.get(3) is None and cache.get(2) is not None
    assert cache.put("huge", bytes(101)) is not None and cache.get("huge") is None  # never kept, nothing flushed
    assert cache.bytes <= 100


def test_worker_runs_in_order_refuses_beyond_bound_and_cancels() -> None:
    worker = Worker(max_pending=3)
    try:
        release = gate(worker, 1)
        order: list[int] = []
        first = worker.submit(order.append, 1)
        second = worker.submit(order.append, 2)
        with pytest.raises(Busy):
            worker.submit(order.append, 3)
        assert second.cancel() and worker.pending == 2
        release.set()
        first.result(5)
        assert order == [1] and worker.cancelled == 1
    finally:
        worker.close()


# ----------------------------------------------------------------------------------------------- pages
def test_info_and_page(client: TestClient, model: TextureModel) -> None:
    info = client.get("/api/info").json()
    assert info["canvas"] == {"height": 64, "width": 96} and info["patch"] == 32
    assert [lvl["factor"] for lvl in info["levels"]] == [4, 2, 1]
    assert info["modalities"] == list(OUTPUT_MAPS) and info["formats"] == ["exr", "png16", "tiff", "glb"]
    assert info["seed_max"] == 2**32 - 1 and info["device"] == "cpu"
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/vendor/three/build/three.module.js" in page.text and "https://" not in page.text


def test_static_files_are_a_fixed_packaged_table(client: TestClient) -> None:
    files = studio_of(client).files
    for name in ("js/main.js", "js/zoom.js", "js/preview.js", "js/api.js", "studio.css",
                 "vendor/three/build/three.module.js", "vendor/three/build/three.core.js",
                 "vendor/three/addons/controls/OrbitControls.js", "vendor/three/addons/loaders/GLTFLoader.js",
                 "vendor/three/LICENSE"):
        assert name in files, name
    r = client.get("/static/js/main.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert b"REVISION = '187'" in files["vendor/three/build/three.core.js"][0]
    assert b"MIT License" in files["vendor/three/LICENSE"][0]
    for name, (data, _) in files.items():  # no library is fetched from elsewhere
        if name.endswith((".js", ".html", ".css")) and not name.startswith("vendor/"):
            assert b"http://" not in data and b"https://" not in data, name
    for bad in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/app.py", "/static/js/../../app.py"):
        r = client.get(bad)
        assert r.status_code == 404 and "error" in r.json(), bad


# --------------------------------------------------------------------------------------------- pixels
def _same_8bit(a: np.ndarray, b: np.ndarray, what: str) -> None:
    """8-bit images of the same values computed two ways: float round-off may move a value across a rounding
    boundary, so a pixel may differ by one step, and only where the float values sit at a boundary."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (what, int(diff.max()), float((diff > 0).mean()))


def test_tiles_equal_generate_exactly(client: TestClient, model: TextureModel, reference) -> None:
    engine = studio_of(client).engine
    ident = Identity(SEED, PSI)
    finest = engine.pyramid.finest
    for m in OUTPUT_MAPS:
        floats = np.concatenate([np.concatenate([engine.tile_array(ident, m, finest, r, c) for c in range(3)], 1)
                                 for r in range(2)], 0)
        # the same forward passes as generate; other batch shapes or thread counts only reorder sums
        assert_roundoff_equal(floats, reference[m], what=f"{m} tiles against generate")
        _same_8bit(stitch(client, m, finest), to_uint8(reference[m]), m)
        for level in range(finest):
            f = engine.pyramid.factor(level)
            _same_8bit(stitch(client, m, level), to_uint8(area_downsample(reference[m], f)), f"{m} level {level}")


def test_tiles_equal_the_generate_command_files(client: TestClient, ckpt: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["generate", str(ckpt), "--seeds", str(SEED), "-t", str(PSI), "--out",
                                       str(tmp_path), "--format", "exr", "--no-progress"])
    assert result.exit_code == 0, result.output
    engine, ident = studio_of(client).engine, Identity(SEED, PSI)
    full = {m: engine.region(ident, m, (0, 0, 64, 96)) for m in OUTPUT_MAPS}
    written = {m: read_image(tmp_path / f"seed{SEED:04d}" / f"{m}.exr") for m in OUTPUT_MAPS}
    assert_roundoff_equal(written["displacement"], full["displacement"], what="displacement")  # float32 in the file
    for m in ("albedo", "specular", "normal"):  # half floats in the file
        assert np.abs(written[m] - full[m]).max() <= HALF_FLOAT_QUANTISATION, m


def test_interpolation_and_noise_tiles(client: TestClient, model: TextureModel) -> None:
    ws = interpolate_ws(model.ws_for_seed(SEED, PSI), model.ws_for_seed(9, PSI), 0.25)
    mixed = model.sample_ws(ws, OUTPUT_MAPS, noise_seed=SEED)
    got = stitch(client, "albedo", 2, f"seed={SEED}&truncation={PSI}&seed_b=9&t=0.25")
    _same_8bit(got, to_uint8(mixed["albedo"]), "interpolated albedo")
    varied = model.sample(SEED, OUTPUT_MAPS, PSI, noise_seed=77)
    got = stitch(client, "displacement", 2, f"seed={SEED}&truncation={PSI}&noise=77")
    _same_8bit(got, to_uint8(varied["displacement"]), "new-noise displacement")
    assert not np.array_equal(got, stitch(client, "displacement", 2))  # new noise, new pores


def test_thumbnail_and_preview(client: TestClient, reference) -> None:
    thumb = png(client.get(f"/api/thumb?seed={SEED}&truncation={PSI}"))
    assert thumb.shape == (16, 24, 3)
    assert np.abs(thumb.astype(int) - to_uint8(area_downsample(reference["albedo"], 4))).max() <= 1
    r = client.get(f"/api/preview.glb?seed={SEED}&truncation={PSI}")
    assert r.status_code == 200 and r.headers["content-type"] == "model/gltf-binary"
    assert r.content[:4] == b"glTF"


# ------------------------------------------------------------------------------------------ bad input
BAD = [
    (TILE.format(seed=-1, psi=1, m="albedo", level=0, row=0, col=0), "seed"),
    (TILE.format(seed=2**32, psi=1, m="albedo", level=0, row=0, col=0), "seed"),
    (TILE.format(seed="1e3", psi=1, m="albedo", level=0, row=0, col=0), "seed"),
    (TILE.format(seed=1, psi="nan", m="albedo", level=0, row=0, col=0), "truncation"),
    (TILE.format(seed=1, psi="inf", m="albedo", level=0, row=0, col=0), "truncation"),
    (TILE.format(seed=1, psi=5, m="albedo", level=0, row=0, col=0), "truncation"),
    (TILE.format(seed=1, psi=1, m="roughness", level=0, row=0, col=0), "modality"),
    (TILE.format(seed=1, psi=1, m="albedo", level=3, row=0, col=0), "level"),
    (TILE.format(seed=1, psi=1, m="albedo", level=2, row=2, col=0), "row"),
    (TILE.format(seed=1, psi=1, m="albedo", level=2, row=0, col=-1), "col"),
    (TILE.format(seed=1, psi=1, m="albedo", level=0, row=0, col=1), "col"),
    ("/api/tile?seed=1&modality=albedo&row=0&col=0", "level"),
    ("/api/tile?seed=1&seed=2&modality=albedo&level=0&row=0&col=0", "seed"),
    ("/api/tile?seed=1&modality=albedo&level=0&row=0&col=0&zoom=3", "zoom"),
    ("/api/tile?seed=1&seed_b=2&modality=albedo&level=0&row=0&col=0", "t"),
    ("/api/tile?seed=1&t=0.5&modality=albedo&level=0&row=0&col=0", "seed_b"),
    ("/api/tile?seed=1&seed_b=2&t=1.5&modality=albedo&level=0&row=0&col=0", "t"),
    ("/api/tile?seed=1&noise=-3&modality=albedo&level=0&row=0&col=0", "noise"),
    ("/api/thumb?truncation=1", "seed"),
    ("/api/thumb?seed=1&modality=albedo", "modality"),
    ("/api/preview.glb?seed=x", "seed"),
    ("/api/info?debug=1", "debug"),
]


@pytest.mark.parametrize("url,param", BAD)
def test_bad_parameters_are_400_naming_them(client: TestClient, url: str, param: str) -> None:
    before = studio_of(client).worker.completed
    r = client.get(url)
    assert r.status_code == 400, r.text
    assert r.json()["param"] == param and param in r.json()["error"]
    assert studio_of(client).worker.completed == before  # refused before any work was queued


def test_bad_requests_are_4xx_json(client: TestClient) -> None:
    cases = [
        (client.post("/api/downloads", json={"seed": 1, "format": "jpg"}), 400, "format"),
        (client.post("/api/downloads", json={"format": "exr"}), 400, "seed"),
        (client.post("/api/downloads", json={"seed": True, "format": "exr"}), 400, "seed"),
        (client.post("/api/downloads", json={"seed": 1, "format": "exr", "path": "/etc"}), 400, "path"),
        (client.post("/api/downloads", content=b"{not json"), 400, "body"),
        (client.post("/api/downloads", json=[1, 2]), 400, "body"),
        (client.post("/api/downloads", content=b"x" * 5000), 413, None),
        (client.get("/api/thumb?seed=1&truncation=" + "1" * 2000), 414, None),
        (client.get("/api/downloads/zzz"), 404, "id"),
        (client.get("/api/downloads/" + "0" * 32), 404, "id"),
        (client.get("/api/downloads/" + "0" * 32 + "/file"), 404, "id"),
        (client.delete("/api/downloads/" + "0" * 32), 404, "id"),
        (client.get("/api/nothing"), 404, None),
        (client.post("/api/tile"), 405, None),
    ]
    for r, status, param in cases:
        assert r.status_code == status, (r.request.url, r.text)
        body = r.json()
        assert "error" in body and body.get("param") == param, body


# ------------------------------------------------------------------------------------ cache and queue
def test_cache_serves_repeats_without_synthesis_and_stays_bounded(model: TextureModel, one_thread) -> None:
    with TestClient(create_app(model, Limits(cache_mb=1))) as c:
        studio = studio_of(c)
        url = TILE.format(seed=1, psi=1, m="albedo", level=2, row=0, col=0)
        first = c.get(url).content
        runs, done = studio.engine.passes_run, studio.worker.completed
        assert c.get(url).content == first
        assert studio.engine.passes_run == runs and studio.worker.completed == done  # no job queued at all
        c.get(TILE.format(seed=1, psi=1, m="normal", level=2, row=0, col=1))
        assert studio.engine.passes_run == runs  # the same row of patches: its pass was cached
        for seed in range(40):
            c.get(TILE.format(seed=seed, psi=1, m="albedo", level=0, row=0, col=0))
        stats = studio.engine.stats()
        for name in ("maps_cache", "results_cache"):
            assert 0 < stats[name]["bytes"] <= stats[name]["max_bytes"] == 512 << 10
        assert stats["maps_cache"]["entries"] < 40 * len(studio.engine.passes)  # evicted


def test_full_queue_is_503_then_recovers(model: TextureModel, one_thread) -> None:
    with TestClient(create_app(model, Limits(queue=2))) as c:
        worker = studio_of(c).worker
        release = gate(worker, 2)
        url = TILE.format(seed=5, psi=1, m="albedo", level=0, row=0, col=0)
        r = c.get(url)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
        r = c.post("/api/downloads", json={"seed": 5, "format": "glb"})
        assert r.status_code == 503
        release.set()
        assert c.get(url).status_code == 200


def test_disconnected_client_cancels_its_queued_work(model: TextureModel, one_thread) -> None:
    import httpx2

    app = create_app(model)
    with running(app) as url:
        studio = app.state.studio
        release = gate(studio.worker, 1)
        with pytest.raises(httpx2.TimeoutException):
            httpx2.get(url + TILE.format(seed=11, psi=1, m="albedo", level=0, row=0, col=0), timeout=0.3)
        deadline = time.monotonic() + 5
        while studio.worker.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert studio.worker.cancelled == 1
        release.set()
        runs = studio.engine.passes_run
        time.sleep(0.2)
        assert studio.engine.passes_run == runs == 0  # the abandoned tile was never synthesised


# ------------------------------------------------------------------------------------------ downloads
def finish(c: TestClient, download_id: str) -> dict:
    for _ in range(200):
        status = c.get(f"/api/downloads/{download_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"download {download_id} did not finish: {status}")


@pytest.mark.parametrize("fmt,suffix", [("exr", ".exr"), ("png16", ".png"), ("tiff", ".tif")])
def test_map_downloads_are_generate_files(client: TestClient, reference, tmp_path: Path, fmt: str,
                                          suffix: str) -> None:
    r = client.post("/api/downloads", json={"seed": SEED, "truncation": PSI, "format": fmt})
    assert r.status_code == 202 and r.headers["location"] == f"/api/downloads/{r.json()['id']}"
    status = finish(client, r.json()["id"])
    assert status["state"] == "done" and status["progress"] == 1.0, status
    data = client.get(status["url"])
    assert data.status_code == 200 and data.headers["content-type"] == "application/zip"
    assert status["name"] in data.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(data.content)) as archive:
        archive.extractall(tmp_path)
    folder = tmp_path / status["name"][: -len(".zip")]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{m}{suffix}" for m in OUTPUT_MAPS] + ["contact.png", "studio.json"])
    record = json.loads((folder / "studio.json").read_text())
    assert record["identity"] == {"seed": SEED, "truncation": PSI, "noise": SEED, "seed_b": None, "t": None}
    tolerance = {"exr": 1e-3, "png16": 1 / 65535, "tiff": 1 / 65535}[fmt]
    for m in OUTPUT_MAPS:
        assert np.abs(read_image(folder / f"{m}{suffix}") - reference[m]).max() <= tolerance, m


def test_glb_download_and_cancel(client: TestClient, tmp_path: Path) -> None:
    import trimesh

    status = finish(client, client.post("/api/downloads", json={"seed": 2, "format": "glb"}).json()["id"])
    assert status["state"] == "done" and status["name"].endswith(".glb")
    path = tmp_path / status["name"]
    path.write_bytes(client.get(status["url"]).content)
    summary = validate_glb(path)
    assert summary["vertices"] > 1000 and "KHR_materials_specular" in summary["material"]["extensions"]
    assert len(trimesh.load(path, force="scene").geometry) == 1

    release = gate(studio_of(client).worker, 1)
    queued = client.post("/api/downloads", json={"seed": 4, "format": "exr"}).json()
    cancelled = client.delete(f"/api/downloads/{queued['id']}").json()
    assert cancelled["state"] == "cancelled"
    r = client.get(f"/api/downloads/{queued['id']}/file")
    assert r.status_code == 409 and r.json()["param"] == "id"
    release.set()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_reports_a_missing_or_broken_run(tmp_path: Path, ckpt: Path, monkeypatch, one_thread) -> None:
    result = CliRunner().invoke(main, ["studio", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "Error:" in result.output and "nowhere" in result.output
    assert "Traceback" not in result.output
    G, _ = build(SMALL_PRESET, seed=3, mask=ellipse_mask())
    with torch.no_grad():
        G.levels[0].conv0.conv.weight.fill_(float("nan"))
    result = CliRunner().invoke(main, ["studio", str(save_generator(tmp_path / "nan.safetensors", G))])
    assert result.exit_code == 1 and "NaN" in result.output and "Traceback" not in result.output

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(TextureModel, "sample", out_of_memory)
    result = CliRunner().invoke(main, ["studio", str(ckpt)])
    assert result.exit_code == 1 and "does not run on cpu: CUDA out of memory" in result.output


def test_cli_binds_loopback_warns_otherwise_and_reports_a_busy_port(ckpt: Path, monkeypatch, one_thread) -> None:
    import gantlitz.studio as studio

    served: list[tuple] = []
    monkeypatch.setattr(studio, "serve", lambda model, sock, limits: served.append(sock.getsockname()) or sock.close())
    result = CliRunner().invoke(main, ["studio", str(ckpt), "--port", "0"])
    assert result.exit_code == 0, result.output
    assert served[-1][0] == "127.0.0.1" and "warning" not in result.output and "http://127.0.0.1:" in result.output
    result = CliRunner().invoke(main, ["studio", str(ckpt), "--port", "0", "--host", "0.0.0.0"])
    assert result.exit_code == 0 and "warning: --host 0.0.0.0" in result.output
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["studio", str(ckpt), "--port", str(port)])
    assert result.exit_code == 1 and f"can not listen on 127.0.0.1:{port}" in result.output


# -------------------------------------------------------------------------------------------- browser
CHROMIUM = os.environ.get("GANTLITZ_CHROMIUM", "/usr/bin/chromium")


def browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set GANTLITZ_CHROMIUM)")
    return sync_playwright


def test_browser_end_to_end(model: TextureModel, tmp_path: Path, one_thread) -> None:
    """Seed browser → select → zoom to 1:1 → lit head not blank → .glb download; no console errors.

    GANTLITZ_STUDIO_RUN serves another run (e.g. gantlitz-demo/run) and GANTLITZ_STUDIO_SCREENSHOT names
    where to keep the screenshot (docs/images/studio.png was taken so)."""
    import trimesh

    sync_playwright = browser_or_skip()
    run = os.environ.get("GANTLITZ_STUDIO_RUN")
    served = gantlitz.load(run) if run else model
    shot = Path(os.environ.get("GANTLITZ_STUDIO_SCREENSHOT", tmp_path / "studio.png"))
    problems: list[str] = []
    app = create_app(served)
    with running(app) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=shutil.which(CHROMIUM) or CHROMIUM,
                                     args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860}, accept_downloads=True)
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url)
            page.wait_for_function("document.getElementById('grid').dataset.loaded === '12'", timeout=30000)
            page.click(".thumb[data-seed='5']")
            assert page.get_attribute(".thumb[data-seed='5']", "class") == "thumb selected"
            finest = app.state.studio.engine.pyramid.finest
            page.click("#one")
            page.wait_for_function(f"""(() => {{ const z = document.getElementById('zoom');
                const [a, b] = (z.dataset.tiles || '0/0').split('/');
                return z.dataset.level === '{finest}' && a === b && a !== '0'; }})()""", timeout=30000)
            page.wait_for_selector("#three[data-state=ready]", timeout=30000)
            head = np.asarray(Image.open(io.BytesIO(page.locator("#three canvas").screenshot())).convert("RGB"))
            background = np.array([0x20, 0x21, 0x24])
            assert (np.abs(head.astype(int) - background).sum(-1) > 30).mean() > 0.05, "the WebGL canvas is blank"
            assert head.std() > 10
            page.click("#fit")
            page.screenshot(path=str(shot))
            page.select_option("#format", "glb")
            with page.expect_download(timeout=60000) as download:
                page.click("#download")
            glb = tmp_path / download.value.suggested_filename
            download.value.save_as(glb)
        finally:
            browser.close()
    assert glb.name.startswith(f"{served.name}-seed0005") and glb.suffix == ".glb"
    assert validate_glb(glb)["triangles"] > 1000
    assert len(trimesh.load(glb, force="scene").geometry) == 1
    assert problems == [], problems
    assert shot.stat().st_size > 10_000
