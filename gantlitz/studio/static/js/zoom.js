// Deep zoom over the server's tile pyramid: only the tiles in view are requested, at the level whose
// pixels are at least as fine as the screen's; tiles leaving the view abort their request, which
// cancels the server's queued work. Level 0 (the whole canvas in one tile) stays underneath as a backdrop.

import { isAbort } from "./api.js";

export class DeepZoom {
  constructor(element, fetcher, info, onError) {
    this.el = element;
    this.layer = element.querySelector("#tiles");
    this.gridEl = element.querySelector("#patch-grid");
    this.fetcher = fetcher;
    this.onError = onError;
    this.patch = info.patch;
    this.levels = info.levels;
    this.finest = info.levels.length - 1;
    this.width = info.canvas.width;
    this.height = info.canvas.height;
    this.tiles = new Map();
    this.query = null;
    this.scale = 1;
    this.cx = this.width / 2;
    this.cy = this.height / 2;
    this.listen();
    new ResizeObserver(() => this.render()).observe(element);
  }

  listen() {
    let drag = null;
    this.el.addEventListener("pointerdown", (e) => {
      drag = { x: e.clientX, y: e.clientY };
      this.el.setPointerCapture(e.pointerId);
    });
    this.el.addEventListener("pointermove", (e) => {
      if (!drag) return;
      this.cx -= (e.clientX - drag.x) / this.scale;
      this.cy -= (e.clientY - drag.y) / this.scale;
      drag = { x: e.clientX, y: e.clientY };
      this.render();
    });
    this.el.addEventListener("pointerup", () => { drag = null; });
    this.el.addEventListener("wheel", (e) => {
      e.preventDefault();
      const box = this.el.getBoundingClientRect();
      this.zoomBy(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - box.left, e.clientY - box.top);
    }, { passive: false });
  }

  // Show another texture (identity query and modality); the view stays where it is.
  show(query, modality) {
    const source = `${query}&modality=${modality}`;
    if (source === this.query) return;
    this.query = source;
    for (const key of [...this.tiles.keys()]) this.drop(key);
    this.render();
  }

  minScale() {
    const box = this.el.getBoundingClientRect();
    return Math.min(box.width / this.width, box.height / this.height) || 1;
  }

  fit() {
    this.scale = this.minScale();
    this.cx = this.width / 2;
    this.cy = this.height / 2;
    this.render();
  }

  oneToOne() {
    this.scale = 1;
    this.render();
  }

  // Zoom by `k` keeping the canvas point under screen point (sx, sy) (default: the centre) in place.
  zoomBy(k, sx, sy) {
    const box = this.el.getBoundingClientRect();
    sx = sx ?? box.width / 2;
    sy = sy ?? box.height / 2;
    const px = this.cx + (sx - box.width / 2) / this.scale;
    const py = this.cy + (sy - box.height / 2) / this.scale;
    this.scale = Math.min(16, Math.max(this.minScale() / 2, this.scale * k));
    this.cx = px - (sx - box.width / 2) / this.scale;
    this.cy = py - (sy - box.height / 2) / this.scale;
    this.render();
  }

  level() {
    const steps = Math.floor(Math.log2(Math.max(1, 1 / this.scale)));
    return Math.max(0, this.finest - steps);
  }

  visible(level) {
    const box = this.el.getBoundingClientRect();
    const span = this.patch * this.levels[level].factor;
    const x0 = this.cx - box.width / 2 / this.scale, x1 = this.cx + box.width / 2 / this.scale;
    const y0 = this.cy - box.height / 2 / this.scale, y1 = this.cy + box.height / 2 / this.scale;
    const { rows, cols } = this.levels[level];
    const keys = [];
    for (let r = Math.max(0, Math.floor(y0 / span)); r <= Math.min(rows - 1, Math.floor(y1 / span)); r += 1) {
      for (let c = Math.max(0, Math.floor(x0 / span)); c <= Math.min(cols - 1, Math.floor(x1 / span)); c += 1) {
        keys.push(`${level}/${r}/${c}`);
      }
    }
    return keys;
  }

  render() {
    if (this.query === null) return;
    const level = this.level();
    const wanted = new Set(["0/0/0", ...this.visible(level)]);
    for (const key of [...this.tiles.keys()]) if (!wanted.has(key)) this.drop(key);
    for (const key of wanted) if (!this.tiles.has(key)) this.load(key);
    for (const [key, tile] of this.tiles) this.place(key, tile.img);
    this.placeGrid();
    this.el.dataset.level = level;
    const f = this.levels[level].factor;
    this.el.parentElement.querySelector("#zoom-info").textContent =
      `level ${level}/${this.finest} (1:${f})  ·  ${(this.scale * 100).toFixed(0)} %`;
    this.updateCounts(level);
  }

  load(key) {
    const [level, row, col] = key.split("/").map(Number);
    const img = document.createElement("img");
    img.className = "tile";
    img.alt = "";
    img.dataset.level = level;
    img.draggable = false;
    img.style.zIndex = String(level + 1);
    const controller = new AbortController();
    const tile = { img, controller, url: null, loaded: false };
    this.tiles.set(key, tile);
    this.layer.appendChild(img);
    const url = `/api/tile?${this.query}&level=${level}&row=${row}&col=${col}`;
    this.fetcher.get(url, { signal: controller.signal }).then((blob) => {
      if (this.tiles.get(key) !== tile) return;
      tile.url = URL.createObjectURL(blob);
      img.onload = () => { tile.loaded = true; this.updateCounts(this.level()); };
      img.src = tile.url;
    }).catch((error) => { if (!isAbort(error)) this.onError(error); });
  }

  drop(key) {
    const tile = this.tiles.get(key);
    tile.controller.abort();
    if (tile.url) URL.revokeObjectURL(tile.url);
    tile.img.remove();
    this.tiles.delete(key);
  }

  place(key, img) {
    const [level, row, col] = key.split("/").map(Number);
    const f = this.levels[level].factor;
    const span = this.patch * f;
    const box = this.el.getBoundingClientRect();
    const left = col * span, top = row * span;
    const w = Math.min(span, this.width - left), h = Math.min(span, this.height - top);
    img.style.left = `${(left - this.cx) * this.scale + box.width / 2}px`;
    img.style.top = `${(top - this.cy) * this.scale + box.height / 2}px`;
    img.style.width = `${w * this.scale}px`;
    img.style.height = `${h * this.scale}px`;
    img.classList.toggle("pixelated", this.scale / f >= 1);
  }

  // Patch borders: the seams of the generator, one line per patch.
  placeGrid() {
    const box = this.el.getBoundingClientRect();
    const step = this.patch * this.scale;
    const g = this.gridEl.style;
    g.left = `${(0 - this.cx) * this.scale + box.width / 2}px`;
    g.top = `${(0 - this.cy) * this.scale + box.height / 2}px`;
    g.width = `${this.width * this.scale}px`;
    g.height = `${this.height * this.scale}px`;
    g.backgroundSize = `${step}px ${step}px`;
  }

  updateCounts(level) {
    let loaded = 0, total = 0;
    for (const tile of this.tiles.values()) {
      if (Number(tile.img.dataset.level) !== level) continue;
      total += 1;
      if (tile.loaded) loaded += 1;
    }
    this.el.dataset.tiles = `${loaded}/${total}`;
  }
}
