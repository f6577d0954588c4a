"""Measured result of issue 6: inversion of held-out subjects (modality completion, super-resolution).

Needs a model trained on prepared data (TRAIN) and a prepared store of held-out subjects (TEST) that the
model never saw. Because each prepared store has its own dataset-wide displacement scale, the held-out
displacement is converted into the training store's units: d' = 0.5 + (d − 0.5) · s_test / s_train.

For every held-out subject:

- **Completion**: invert its albedo; report the albedo reconstruction PSNR (inside the mask) and, for the
  completed specular and displacement (and the normals derived from it), the error against the held-out
  truth next to two baselines: the per-pixel mean of the training subjects' maps ("mean map") and the
  model's average texture (w_avg, hashed noise of seed 0).
- **Super-resolution**: area-down-sample the albedo by f, invert that; report the PSNR at full resolution
  against the truth for the inversion and for bicubic up-sampling, the PSNR after down-sampling the output
  back to the low resolution (consistency with the target), and the high-frequency energy — mean
  squared residual x − bicubic_up(area_down(x, f)) inside the (eroded) mask — of output, bicubic and truth.

Recipe of the numbers in docs/benchmarks.md (CPU, tiny preset):

    gantlitz synth raw_all --subjects 12 --size 256x256 --seed 0
    # raw_train = mask.png + subject000..009, raw_test = mask.png + subject010..011 (copies)
    gantlitz prepare raw_train ds_train && gantlitz prepare raw_test ds_test
    python -c "from gantlitz.train.loop import train; train('ds_train', 'run', 'tiny', steps=100000, \
        device='cpu', max_minutes=15)"          # twice (the second with resume=True): 4112 steps
    python benchmarks/bench_invert.py --model run/model.safetensors --train ds_train --test ds_test \
        --out bench-invert --steps 400,400 --factor 4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

import gantlitz
from gantlitz.invert import InversionConfig, complete, contact_image, invert, psnr, synthesize_maps
from gantlitz.maps import displacement_to_normals


def _store(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    manifest = json.loads((path / "manifest.json").read_text())
    tex = np.load(path / "textures.npy", mmap_mode="r")
    mask = np.load(path / "mask.npy")
    return tex, mask, manifest


def _split(t: np.ndarray) -> dict[str, np.ndarray]:
    t = np.asarray(t, np.float32) / 65535.0
    return {"albedo": t[..., 0:3], "specular": t[..., 3:4], "displacement": t[..., 4:5]}


def _area(x: np.ndarray, f: int) -> np.ndarray:
    h, w, c = x.shape
    return x.reshape(h // f, f, w // f, f, c).mean(axis=(1, 3)).astype(np.float32)


def _bicubic(x: np.ndarray, f: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]
    up = F.interpolate(t, scale_factor=f, mode="bicubic", align_corners=False)
    return up[0].permute(1, 2, 0).clamp(0, 1).numpy()


def _hf_energy(x: np.ndarray, f: int, region: np.ndarray) -> float:
    res = x - _bicubic(_area(x, f), f)
    return float((res[region > 0] ** 2).mean())


def _mae(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    return float(np.abs(a - b)[mask > 0].mean())


def _angle(na: np.ndarray, nb: np.ndarray, mask: np.ndarray) -> float:
    cos = np.clip((na * nb).sum(axis=2), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos))[mask > 0].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="checkpoint / model file / run directory")
    ap.add_argument("--train", required=True, type=Path, help="prepared store the model was trained on")
    ap.add_argument("--test", required=True, type=Path, help="prepared store of held-out subjects")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--steps", default="400,400", help="LATENT,NOISE steps per inversion")
    ap.add_argument("--region-patches", type=int, default=2)
    ap.add_argument("--factor", type=int, default=4, help="super-resolution factor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    s1, s2 = (int(v) for v in args.steps.split(","))
    args.out.mkdir(parents=True, exist_ok=True)

    model = gantlitz.load(args.model, device=args.device, precision="fp32")
    G = model.G
    train_tex, mask, train_man = _store(args.train)
    test_tex, test_mask, test_man = _store(args.test)
    if tuple(mask.shape) != tuple(G.canvas) or not np.array_equal(mask, test_mask):
        raise SystemExit("train/test masks or canvas differ from the model's")
    s_train, s_test = float(train_man["displacement_scale"]), float(test_man["displacement_scale"])
    conv = train_man.get("normal_convention", "opengl")
    mean_map = {k: v.mean(axis=0) for k, v in _split(train_tex).items()}
    avg = synthesize_maps(G, G.w_avg[None, None].expand(1, G.num_ws, -1), None, noise_seed=0, device=args.device)
    f = args.factor
    inner = ndimage.binary_erosion(mask > 0, iterations=2 * f).astype(np.uint8)
    cfg = InversionConfig(latent_steps=s1, noise_steps=s2, region_patches=args.region_patches or None,
                          seed=args.seed)

    rows = []
    for i, name in enumerate(test_man["subjects"]):
        truth = _split(test_tex[i])
        truth["displacement"] = 0.5 + (truth["displacement"] - 0.5) * (s_test / s_train)
        t0 = time.time()
        res = invert(model, truth["albedo"], "albedo", "completion", cfg, device=args.device)
        t_comp = time.time() - t0
        maps = complete(res, model)
        n_truth = displacement_to_normals(truth["displacement"], s_train, conv)
        row = {
            "subject": name, "completion_s": round(t_comp, 1),
            "albedo_psnr": psnr(maps["albedo"], truth["albedo"], mask),
            "albedo_psnr_w_avg": psnr(avg["albedo"], truth["albedo"], mask),
            "albedo_psnr_mean_map": psnr(mean_map["albedo"], truth["albedo"], mask),
        }
        for mod in ("specular", "displacement"):
            row[f"{mod}_mae"] = _mae(maps[mod], truth[mod], mask)
            row[f"{mod}_mae_mean_map"] = _mae(mean_map[mod], truth[mod], mask)
            row[f"{mod}_mae_w_avg"] = _mae(avg[mod], truth[mod], mask)
            row[f"{mod}_psnr"] = psnr(maps[mod], truth[mod], mask)
            row[f"{mod}_psnr_mean_map"] = psnr(mean_map[mod], truth[mod], mask)
        row["normal_deg"] = _angle(displacement_to_normals(maps["displacement"], s_train, conv), n_truth, mask)
        row["normal_deg_mean_map"] = _angle(
            displacement_to_normals(mean_map["displacement"], s_train, conv), n_truth, mask)
        from gantlitz.outputs import save_image

        save_image(contact_image(maps, "albedo", truth["albedo"], 1, mask=mask, title=f"{name} completion"),
                  args.out / f"{name}_completion.png", overwrite=True)

        low = _area(truth["albedo"], f)
        t0 = time.time()
        sr = invert(model, low, "albedo", "superres", cfg, device=args.device)
        row["superres_s"] = round(time.time() - t0, 1)
        up = _bicubic(low, f)
        row["sr_factor"] = f
        row["sr_psnr_full"] = psnr(sr.reconstruction, truth["albedo"], mask)
        row["sr_psnr_full_bicubic"] = psnr(up, truth["albedo"], mask)
        row["sr_psnr_low"] = sr.psnr
        row["sr_psnr_low_bicubic"] = psnr(_area(up, f), low, _area(mask[:, :, None].astype(np.float32), f)[:, :, 0])
        row["sr_hf_output"] = _hf_energy(sr.reconstruction, f, inner)
        row["sr_hf_bicubic"] = _hf_energy(up, f, inner)
        row["sr_hf_truth"] = _hf_energy(truth["albedo"], f, inner)
        sr_maps = complete(sr, model)
        save_image(contact_image(sr_maps, "albedo", low, f, mask=mask, title=f"{name} super-resolution x{f}"),
                  args.out / f"{name}_superres.png", overwrite=True)
        rows.append(row)
        print(json.dumps(row), flush=True)

    keys = [k for k in rows[0] if k != "subject"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    report = {
        "model": str(args.model), "train": str(args.train), "test": str(args.test), "steps": [s1, s2],
        "region_patches": args.region_patches, "device": args.device, "torch": torch.__version__,
        "subjects": rows, "mean": mean,
    }
    (args.out / "invert_benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    print("MEAN", json.dumps(mean, indent=1))


if __name__ == "__main__":
    main()
