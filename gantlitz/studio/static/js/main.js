// The studio page: the seed browser, the deep-zoom viewer, identity controls (interpolation, noise),
// the lit head and downloads, all driven by one state object.

import { Fetcher, identityQuery, isAbort } from "./api.js";
import { DeepZoom } from "./zoom.js";
import { Preview } from "./preview.js";

const PAGE = 12;
const $ = (id) => document.getElementById(id);

const state = { seed: 0, truncation: 1, noise: null, mix: false, seedB: 1, t: 0.5, modality: "albedo" };
const fetcher = new Fetcher(4);
let info = null, zoom = null, preview = null, thumbsController = null;

function say(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function report(error) {
  say(error.param ? `${error.param}: ${error.message}` : error.message, true);
}

function seedValue(input, fallback) {
  const value = Number.parseInt(input.value, 10);
  return Number.isFinite(value) && value >= 0 && value <= info.seed_max ? value : fallback;
}

// ---------------------------------------------------------------------------------------------- seeds
function showThumbs() {
  if (thumbsController) thumbsController.abort();
  const controller = new AbortController();
  thumbsController = controller;
  const start = seedValue($("seed-start"), 0);
  const grid = $("grid");
  grid.replaceChildren();
  grid.dataset.loaded = "0";
  let loaded = 0;
  for (let seed = start; seed < Math.min(start + PAGE, info.seed_max + 1); seed += 1) {
    const button = document.createElement("button");
    button.className = "thumb";
    button.dataset.seed = seed;
    button.classList.toggle("selected", seed === state.seed);
    const img = document.createElement("img");
    img.alt = `seed ${seed}`;
    const caption = document.createElement("span");
    caption.textContent = seed;
    button.append(img, caption);
    button.addEventListener("click", () => select(seed));
    grid.appendChild(button);
    const query = new URLSearchParams({ seed, truncation: state.truncation });
    fetcher.get(`/api/thumb?${query}`, { signal: controller.signal }).then((blob) => {
      img.onload = () => URL.revokeObjectURL(img.src);
      img.src = URL.createObjectURL(blob);
      loaded += 1;
      grid.dataset.loaded = String(loaded);
    }).catch((error) => { if (!isAbort(error)) report(error); });
  }
}

function select(seed) {
  state.seed = seed;
  for (const button of $("grid").children) button.classList.toggle("selected", Number(button.dataset.seed) === seed);
  update();
}

// --------------------------------------------------------------------------------------------- views
function update() {
  $("seed-value").textContent = state.seed;
  $("noise").placeholder = `= seed (${state.seed})`;
  const query = identityQuery(state).toString();
  zoom.show(query, state.modality);
  preview.show(query);
  say("");
}

function setModality(modality) {
  state.modality = modality;
  for (const tab of $("tabs").children) tab.classList.toggle("active", tab.dataset.modality === modality);
  update();
}

// ----------------------------------------------------------------------------------------- downloads
async function download() {
  const button = $("download"), bar = $("download-progress"), link = $("download-link");
  const body = { seed: state.seed, truncation: state.truncation, format: $("format").value };
  if (state.noise !== null) body.noise = state.noise;
  if (state.mix) Object.assign(body, { seed_b: state.seedB, t: state.t });
  button.disabled = true;
  link.hidden = true;
  bar.value = 0;
  try {
    let job = await fetcher.get("/api/downloads", {
      kind: "json", init: { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) },
    });
    say(`synthesising ${job.name} …`);
    while (!["done", "failed", "cancelled"].includes(job.state)) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      job = await fetcher.get(`/api/downloads/${job.id}`, { kind: "json" });
      bar.value = job.progress;
      say(`${job.state} ${job.name}: ${(job.progress * 100).toFixed(0)} %`);
    }
    if (job.state !== "done") throw new Error(`download ${job.state}${job.error ? `: ${job.error}` : ""}`);
    link.href = job.url;
    link.download = job.name;
    link.textContent = `${job.name} (${(job.bytes / 1e6).toFixed(1)} MB)`;
    link.hidden = false;
    link.click();
    say(`ready: ${job.name}`);
  } catch (error) {
    report(error);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------- wiring
function wire() {
  $("seed-start").addEventListener("change", showThumbs);
  $("prev").addEventListener("click", () => {
    $("seed-start").value = Math.max(0, seedValue($("seed-start"), 0) - PAGE);
    showThumbs();
  });
  $("next").addEventListener("click", () => {
    $("seed-start").value = Math.min(info.seed_max, seedValue($("seed-start"), 0) + PAGE);
    showThumbs();
  });
  $("truncation").addEventListener("input", (e) => { $("truncation-value").textContent = Number(e.target.value).toFixed(2); });
  $("truncation").addEventListener("change", (e) => {
    state.truncation = Number(e.target.value);
    showThumbs();
    update();
  });
  for (const tab of $("tabs").children) tab.addEventListener("click", () => setModality(tab.dataset.modality));
  $("fit").addEventListener("click", () => zoom.fit());
  $("one").addEventListener("click", () => zoom.oneToOne());
  $("zoom-in").addEventListener("click", () => zoom.zoomBy(2));
  $("zoom-out").addEventListener("click", () => zoom.zoomBy(0.5));
  $("grid-lines").addEventListener("change", (e) => { $("patch-grid").hidden = !e.target.checked; });
  $("mix").addEventListener("change", (e) => { state.mix = e.target.checked; update(); });
  $("seed-b").addEventListener("change", (e) => { state.seedB = seedValue(e.target, state.seedB); if (state.mix) update(); });
  $("t").addEventListener("input", (e) => { $("t-value").textContent = Number(e.target.value).toFixed(2); });
  $("t").addEventListener("change", (e) => { state.t = Number(e.target.value); if (state.mix) update(); });
  $("noise").addEventListener("change", (e) => {
    state.noise = e.target.value === "" ? null : seedValue(e.target, state.noise);
    update();
  });
  $("vary").addEventListener("click", () => {
    state.noise = Math.floor(Math.random() * (info.seed_max + 1));
    $("noise").value = state.noise;
    update();
  });
  $("noise-reset").addEventListener("click", () => {
    state.noise = null;
    $("noise").value = "";
    update();
  });
  for (const id of ["light-az", "light-el"]) {
    $(id).addEventListener("input", () => {
      $(`${id}-value`).textContent = `${$(id).value}°`;
      preview.setLight(Number($("light-az").value), Number($("light-el").value));
    });
  }
  $("download").addEventListener("click", download);
}

async function start() {
  try {
    info = await fetcher.get("/api/info", { kind: "json" });
  } catch (error) {
    report(error);
    return;
  }
  $("model").textContent = `${info.model} · ${info.canvas.width}×${info.canvas.height} · patch ${info.patch} · ${info.device}`;
  const [low, high] = info.truncation_range;
  Object.assign($("truncation"), { min: low, max: high });
  zoom = new DeepZoom($("zoom"), fetcher, info, report);
  preview = new Preview($("three"), fetcher, report);
  wire();
  showThumbs();
  zoom.fit();
  update();
  document.body.dataset.ready = "true";
}

start();
