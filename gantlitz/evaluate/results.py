"""The `evaluate` command's result files: KID values (JSON, CSV, box plots), spectra, the layout measure."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config import MODALITIES
from ..metrics.layout import layout_plot, layout_scores
from ..metrics.plots import kid_boxplot, spectra_plot
from ..metrics.spectra import radial_power_spectrum
from ..outputs import atomic_path, write_json
from ..resample import area_downsample
from .locations import Geometry

RESULT_FILES = (
    "kid_whole.json", "kid_whole.csv", "kid_whole.png",
    "kid_patch.json", "kid_patch.csv", "kid_patch.png",
    "spectra.json", "spectra.png", "layout.json", "layout.png", "summary.json",
)


def _outline(image: np.ndarray, top: int, left: int, height: int, width: int, thickness: int = 2) -> np.ndarray:
    img = np.array(image, dtype=np.float32, copy=True)
    red = np.array([1.0, 0.0, 0.0], np.float32)
    b, r = min(top + height, img.shape[0]), min(left + width, img.shape[1])
    img[top : top + thickness, left:r] = red
    img[max(b - thickness, 0) : b, left:r] = red
    img[top:b, left : left + thickness] = red
    img[top:b, max(r - thickness, 0) : r] = red
    return img


def _jsonable(result: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k != "sets"}
    out.update(extra)
    out["sets"] = {
        name: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in entry.items()}
        for name, entry in result["sets"].items()
    }
    return out


def _write_csv(path: Path, result: Mapping[str, Any], sources: Mapping[str, str | None]) -> None:
    with atomic_path(path, overwrite=True) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["set", "checkpoint", "split", "kid"])
        for name, entry in result["sets"].items():
            for i, value in enumerate(entry["values"]):
                writer.writerow([name, sources.get(name) or "", i, repr(float(value))])


def write_kid(out: Path, whole_res: Mapping[str, Any], patch_res: Mapping[str, Any], common: Mapping[str, Any],
              sources: Mapping[str, str], geo: Geometry, location: Any, n_splits: int,
              real_whole: np.ndarray) -> None:
    """kid_{whole,patch}.{json,csv,png}: per-split values, their summary, box plots (patch inset marked)."""
    whole_json = _jsonable(whole_res, {**common, "kind": "whole albedo", "size": [geo.wh, geo.ww],
                                       "factor": geo.factor})
    patch_json = _jsonable(patch_res, {**common, "kind": "albedo patch", "location": [geo.top, geo.left],
                                       "patch": geo.patch,
                                       "location_name": location if isinstance(location, str) else None})
    write_json(out / "kid_whole.json", whole_json, overwrite=True)
    write_json(out / "kid_patch.json", patch_json, overwrite=True)
    _write_csv(out / "kid_whole.csv", whole_res, sources)
    _write_csv(out / "kid_patch.csv", patch_res, sources)
    feat = whole_json["features"]
    kid_boxplot({k: v["values"] for k, v in whole_res["sets"].items()}, out / "kid_whole.png",
                title=f"KID, whole albedo {geo.ww}x{geo.wh} ({feat} features, "
                      f"{n_splits} splits of {whole_res['subset_size']})")
    side = max(geo.patch // geo.factor, 2)
    inset = _outline(real_whole.mean(axis=0), geo.top // geo.factor, geo.left // geo.factor, side, side)
    loc_name = location if isinstance(location, str) else f"({geo.top}, {geo.left})"
    kid_boxplot({k: v["values"] for k, v in patch_res["sets"].items()}, out / "kid_patch.png",
                title=f"KID, {geo.patch}² albedo patch '{loc_name}' ({feat}, "
                      f"{n_splits} splits of {patch_res['subset_size']})",
                inset=inset, inset_title=f"patch at top {geo.top}, left {geo.left}")


def write_spectra(out: Path, real_patch: Mapping[str, np.ndarray], gen_patch: Mapping[str, Mapping[str, np.ndarray]],
                  geo: Geometry) -> None:
    """spectra.{png,json}: radially averaged power spectra of real and generated patches per modality."""
    spectra = {m: {"real": tuple(radial_power_spectrum(real_patch[m])),
                   **{name: tuple(radial_power_spectrum(pset[m])) for name, pset in gen_patch.items()}}
               for m in MODALITIES}
    spectra_plot(spectra, out / "spectra.png",
                 title=f"Radially averaged power spectra, {geo.patch}² patches at ({geo.top}, {geo.left})")
    write_json(out / "spectra.json", {
        "location": [geo.top, geo.left], "patch": geo.patch, "window": "hann",
        "modalities": {m: {name: {"freqs": f.tolist(), "power": p.tolist()} for name, (f, p) in sets.items()}
                       for m, sets in spectra.items()},
    }, overwrite=True)


def write_layout(out: Path, store: Any, real_whole: Mapping[str, np.ndarray],
                 gen_whole: Mapping[str, Mapping[str, np.ndarray]], geo: Geometry) -> dict[str, Any]:
    """layout.{json,png}: per-location agreement of each model's mean maps with the data's (cells wholly
    inside the mask of the down-sampled canvas), with the data's split-half value as the reference."""
    mask = area_downsample(np.asarray(store.mask, np.float32)[:, :, None], geo.factor)[:, :, 0] >= 1.0 - 1e-6
    scores = {name: layout_scores(real_whole, maps, mask) for name, maps in gen_whole.items()}
    layout_plot(real_whole, gen_whole, mask, out / "layout.png", scores)
    write_json(out / "layout.json", {"size": [geo.wh, geo.ww], "factor": geo.factor, "models": scores},
               overwrite=True)
    return scores
