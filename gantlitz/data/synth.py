"""Procedural multi-modal face textures on a real scanned head's UV layout (`gantlitz synth`).

The layout (UV islands, mask, where the eyes, brows, lips, nose and beard are, the large-scale relief)
comes from the Lee Perry-Smith head scan; each synthetic subject gets its own skin tone
(melanin / haemoglobin-like absorption), blotchiness, freckles, pores at several scales, wrinkles,
stubble and hair in the beard / brow / scalp regions, a specular map correlated with all of these, and a
displacement carrying the pores and wrinkles, from which the tangent normal map is derived with
`gantlitz.maps.displacement_to_normals`.  Everything is a pure function of (seed, subject index, size).

Scan credit: "Infinite, 3D Head Scan" by Lee Perry-Smith (Infinite-Realities, www.ir-ltd.net), based on
a work at www.triplegangers.com, licensed under CC BY 3.0.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from .. import imageio, maps
from ..config import check_seed
from ..errors import UsageError
from ..outputs import check_output_dir, install_dir, make_dirs, sibling, write_text, writing
from ..resample import resize

__all__ = [
    "ATTRIBUTION",
    "HeadLayout",
    "SubjectParams",
    "find_scan_dir",
    "packaged_head_dir",
    "load_head",
    "build_head_assets",
    "subject_params",
    "synthesize_subject",
    "synthesize_dataset",
]

ATTRIBUTION = (
    '"Infinite, 3D Head Scan" by Lee Perry-Smith (Infinite-Realities, www.ir-ltd.net), based on a work at '
    "www.triplegangers.com, licensed under CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/)."
)

SCAN_FILES = {
    "albedo": "Map-COL.jpg",
    "specular": "Map-SPEC.jpg",
    "normal": "Infinite-Level_02_Tangent_SmoothUV.jpg",
    "displacement": "Infinite-Level_02_Disp_NoSmoothUV-4096.jpg",
}
"""File names of the original scan maps (as shipped with the three.js examples)."""
HEAD_FILES = {
    "albedo": "albedo.png",
    "specular": "specular.png",
    "normal": "normal.png",
    "displacement": "displacement.png",
    "mask": "mask.png",
}
"""File names of the down-sampled copy shipped inside the package (`gantlitz/data/head/`)."""
HEAD_ENV = "GANTLITZ_HEAD_DIR"
PACKAGED_SIZE = 512
SIZE_MAX = 16384
"""Largest canvas side `synth` makes (one 16K subject is about 3 GB in memory while it is made)."""
SUBJECTS_MAX = 100_000


def packaged_head_dir() -> Path:
    """The down-sampled head maps shipped with the package."""
    return Path(__file__).resolve().parent / "head"


def find_scan_dir() -> Path:
    """The full-resolution scan folder: ``$GANTLITZ_HEAD_DIR``, else ``<repo>/../shared/data/lee-perry-smith``."""
    env = os.environ.get(HEAD_ENV)
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "lee-perry-smith")
    for cand in candidates:
        if (cand / SCAN_FILES["albedo"]).is_file() or (cand / HEAD_FILES["albedo"]).is_file():
            return cand.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Lee Perry-Smith head scan not found (tried {tried}). Set {HEAD_ENV} to the folder holding "
        f"{SCAN_FILES['albedo']} ... or use the packaged copy (no --head-dir)."
    )


def _scan_mask(albedo: np.ndarray, specular: np.ndarray) -> np.ndarray:
    """The scan's UV islands: pixels whose albedo and specular differ from the constant border fill."""
    return maps.derive_mask([albedo, specular], background="border", tol=6.0 / 255.0)


def build_head_assets(scan_dir: str | os.PathLike, out_dir: str | os.PathLike, size: int = PACKAGED_SIZE) -> Path:
    """Write the package's down-sampled copy of the scan maps (PNG) plus the licence text."""
    scan_dir, out_dir = Path(scan_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    full = {k: imageio.read_image(scan_dir / f) for k, f in SCAN_FILES.items()}
    small = {k: resize(v, size, size) for k, v in full.items()}
    small["specular"] = small["specular"][:, :, :1]
    small["displacement"] = small["displacement"][:, :, :1]
    n = maps.decode_normals(small["normal"])
    small["normal"] = maps.encode_normals(n)
    mask = resize(_scan_mask(full["albedo"], full["specular"][:, :, :1])[:, :, None].astype(np.float32), size, size)
    small["mask"] = (mask > 0.5).astype(np.float32)
    for key, name in HEAD_FILES.items():
        bits = 16 if key == "displacement" else 8
        imageio.write_image(out_dir / name, small[key], bits=bits, overwrite=True)
    licence = scan_dir / "LeePerrySmith_License.txt"
    text = licence.read_text() if licence.is_file() else ""
    (out_dir / "LICENSE.txt").write_text(
        f"{ATTRIBUTION}\n\nDown-sampled to {size}x{size} from the three.js example copy of the scan "
        f"(examples/models/gltf/LeePerrySmith/); the mask is derived from the albedo and specular maps.\n\n"
        f"Original notice:\n{text}"
    )
    return out_dir


@dataclass(frozen=True)
class HeadLayout:
    """The scan's maps resampled to a canvas, float32 in [0, 1] (H x W x C), plus derived layout fields."""

    albedo: np.ndarray
    specular: np.ndarray
    displacement: np.ndarray
    mask: np.ndarray  # uint8 H x W
    darkness: np.ndarray  # brows / lashes: darker than the surrounding skin (and not red), in [0, 1]
    beard: np.ndarray  # stubble region of the scan (local high-frequency energy of the albedo), in [0, 1]
    redness: np.ndarray  # lips / cheeks / nose: redder than the mean skin, in [0, 1]
    shading: np.ndarray  # medium-scale luminance ratio (eye folds, nostrils, lip line), around 1
    oiliness: np.ndarray  # normalised smooth specular layout, around 1 on skin
    relief: np.ndarray  # medium-scale height of the scan (canvas pixels at 512), zero-mean
    scalp: np.ndarray  # soft region map of the top of the head (UV rows above the brows)


def load_head(height: int, width: int, head_dir: str | os.PathLike | None = None) -> HeadLayout:
    """The head layout at ``height`` x ``width``, from the packaged copy (default) or a scan folder."""
    src = Path(head_dir) if head_dir is not None else packaged_head_dir()
    if (src / HEAD_FILES["albedo"]).is_file():
        files = HEAD_FILES
    elif (src / SCAN_FILES["albedo"]).is_file():
        files = SCAN_FILES
    else:
        raise FileNotFoundError(
            f"{src}: no head maps ({HEAD_FILES['albedo']} or {SCAN_FILES['albedo']}); "
            f"set {HEAD_ENV} or pass the folder of the Lee Perry-Smith scan"
        )
    ref = PACKAGED_SIZE
    raw = {k: imageio.read_image(src / files[k]) for k in ("albedo", "specular", "displacement")}
    raw = {k: resize(v, ref, ref) for k, v in raw.items()}
    albedo = raw["albedo"][:, :, :3]
    spec = raw["specular"][:, :, :1]
    disp = raw["displacement"][:, :, :1]
    if "mask" in files and (src / files["mask"]).is_file():
        mask = resize(imageio.read_image(src / files["mask"])[:, :, :1], ref, ref)[:, :, 0] > 0.5
    else:
        mask = _scan_mask(albedo, spec).astype(bool)
    m = mask.astype(np.float32)

    def masked_blur(x: np.ndarray, sigma: float) -> np.ndarray:
        num = ndimage.gaussian_filter(x * m, sigma, mode="nearest")
        den = ndimage.gaussian_filter(m, sigma, mode="nearest")
        return num / np.maximum(den, 1e-3)

    lum = albedo @ np.array([0.3, 0.59, 0.11], np.float32)
    lum_s = masked_blur(lum, 2.0)
    lum_l = masked_blur(lum, 24.0)
    darkness = np.clip((lum_l - lum_s) / np.maximum(lum_l, 1e-3) * 4.0, 0, 1) * m
    shading = np.clip(masked_blur(lum, 1.0) / np.maximum(masked_blur(lum, 10.0), 1e-3), 0.6, 1.3)
    shading = np.where(mask, shading, 1.0)
    r, g = albedo[..., 0], albedo[..., 1]
    chroma = masked_blur(r - g, 2.0)
    ref_chroma = np.median(chroma[mask]) if mask.any() else 0.0
    redness = np.clip((chroma - ref_chroma) * 6.0, 0, 1) * m
    # hair is dark but not red (the lips are both)
    darkness = ndimage.gaussian_filter(np.clip(darkness - 2.5 * redness, 0, 1), 1.5)
    rows = np.linspace(0, 1, ref, dtype=np.float32)[:, None]
    darkness = darkness * np.clip((0.42 - rows) / 0.04, 0, 1)  # brows and lashes lie above the nose tip
    hp = lum - masked_blur(lum, 1.5)
    energy = np.sqrt(masked_blur(hp**2, 6.0))
    inner = ndimage.binary_erosion(mask, iterations=12)
    energy = energy / max(float(np.percentile(energy[inner], 97)) if inner.any() else 1.0, 1e-6)
    brows = np.clip((darkness - 0.35) * 3.0, 0, 1)
    beard = np.clip(energy * 1.2 - 0.25, 0, 1) * (1 - ndimage.gaussian_filter(brows, 4.0) * 3).clip(0, 1)
    beard = ndimage.gaussian_filter(beard * inner * (1 - np.clip(redness * 3, 0, 1)), 3.0)
    sp = masked_blur(spec[..., 0], 3.0)
    oil = sp / max(float(np.percentile(sp[mask], 75)) if mask.any() else 1.0, 1e-3)
    d = disp[..., 0]
    relief = (masked_blur(d, 1.0) - masked_blur(d, 40.0)) * 25.0 * m  # ~0.2 of the 8-bit range → ~5 px
    scalp = np.clip((0.22 - rows) / 0.12, 0, 1) * np.ones((1, ref), np.float32) * m

    fields = dict(
        albedo=albedo, specular=spec, displacement=disp, mask=m[:, :, None], darkness=darkness[:, :, None],
        beard=beard[:, :, None],
        redness=redness[:, :, None], shading=shading[:, :, None], oiliness=oil[:, :, None],
        relief=relief[:, :, None], scalp=scalp[:, :, None],
    )
    out = {k: resize(v, height, width) for k, v in fields.items()}
    out["relief"] = out["relief"] * (min(height, width) / ref)  # heights scale with the canvas
    mask_out = (out.pop("mask")[:, :, 0] > 0.5).astype(np.uint8)
    squeeze = {k: (v[:, :, 0] if k not in ("albedo", "specular", "displacement") else v) for k, v in out.items()}
    return HeadLayout(mask=mask_out, **squeeze)


@dataclass(frozen=True)
class SubjectParams:
    """Identity parameters of one synthetic subject (all in [0, 1] unless stated)."""

    melanin: float
    haemoglobin: float
    carotene: float
    blotch: float
    freckles: float
    pores: float
    age: float
    beard: float
    scalp_hair: float
    brow: float
    hair_colour: tuple[float, float, float]
    lips: float
    oiliness: float


def _rng(seed: int, subject: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(subject), int(stream)]))


def subject_params(seed: int, subject: int) -> SubjectParams:
    """Deterministic identity parameters of subject ``subject`` of dataset ``seed``."""
    r = _rng(seed, subject, 0)
    melanin = float(r.uniform(0.0, 1.0))
    hair_dark = float(np.clip(r.beta(2.0, 1.2) + melanin * 0.5, 0, 1))
    base = np.array([0.55, 0.38, 0.22]) * (1 - hair_dark) + np.array([0.05, 0.035, 0.025]) * hair_dark
    if r.random() < 0.12:  # some red / ginger
        base = np.array([0.5, 0.22, 0.1]) * (1 - 0.4 * hair_dark)
    beard = float(r.random() ** 0.7) if r.random() < 0.6 else 0.0
    return SubjectParams(
        melanin=melanin,
        haemoglobin=float(r.uniform(0.35, 1.0)),
        carotene=float(r.uniform(0.0, 0.5)),
        blotch=float(r.uniform(0.1, 1.0)),
        freckles=float(r.random() ** 2.5 * (1.0 - melanin) * (1.0 if r.random() < 0.5 else 0.0)),
        pores=float(r.uniform(0.3, 1.0)),
        age=float(r.random()),
        beard=beard,
        scalp_hair=float(r.random() ** 0.8) if r.random() < 0.6 else 0.0,
        brow=float(r.uniform(0.4, 1.0)),
        hair_colour=tuple(float(c) for c in base),  # type: ignore[arg-type]
        lips=float(r.uniform(0.3, 1.0)),
        oiliness=float(r.uniform(0.5, 1.3)),
    )


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float, aniso: float = 1.0,
           angle: float = 0.0) -> np.ndarray:
    """Unit-variance Gaussian-filtered white noise (periodic), ``sigma`` in pixels; optional anisotropy."""
    white = rng.standard_normal(shape).astype(np.float32)
    f = sfft.rfft2(white, workers=-1)
    fy = sfft.fftfreq(shape[0]).astype(np.float32)[:, None]
    fx = sfft.rfftfreq(shape[1]).astype(np.float32)[None, :]
    c, s = np.cos(angle), np.sin(angle)
    u = fx * c + fy * s
    v = -fx * s + fy * c
    sx, sy = sigma * aniso, sigma / max(aniso, 1e-3)
    f *= np.exp(-2.0 * np.pi**2 * ((u * sx) ** 2 + (v * sy) ** 2))
    out = sfft.irfft2(f, s=shape, workers=-1).astype(np.float32)
    std = float(out.std())
    return out / std if std > 0 else out


# Absorption of melanin, haemoglobin and carotene per linear RGB channel (shapes of the real spectra).
_MELANIN = np.array([1.0, 1.35, 1.75], np.float32)
_HAEMO = np.array([0.04, 0.42, 0.30], np.float32)
_CAROTENE = np.array([0.0, 0.05, 0.30], np.float32)


class _SkinFields(NamedTuple):
    hb: np.ndarray
    mel: np.ndarray
    pores: np.ndarray
    wrinkles: np.ndarray
    hair: np.ndarray
    dots: np.ndarray


def _skin_fields(layout: HeadLayout, p: SubjectParams, rng: np.random.Generator, k: float) -> _SkinFields:
    """The chromophore, pore, wrinkle and hair fields of one subject (the first draws of its stream)."""
    shape = layout.mask.shape
    blotch = _noise(rng, shape, 12 * k) * 0.6 + _noise(rng, shape, 3 * k) * 0.4
    hb = p.haemoglobin * (1.0 + 0.22 * p.blotch * blotch + 1.2 * layout.redness * (0.4 + p.lips))
    mel_var = _noise(rng, shape, 30 * k)
    mel = (0.04 + 2.6 * p.melanin**1.5) * (1.0 + 0.06 * mel_var)
    # freckles: sparse blobs, denser where a smooth random weight is high
    fr = _noise(rng, shape, 1.1 * k)
    fr_weight = np.clip(_noise(rng, shape, 40 * k) * 0.5 + 0.6, 0, 1)
    freckles = np.clip((fr - 1.5) * 1.5, 0, 1) * fr_weight * p.freckles
    mel = mel + 0.9 * freckles
    # pores at two scales: small pits (darker, less specular, lower)
    pore_fine = _noise(rng, shape, 0.55 * max(k, 1.0) ** 0.5)
    pore_mid = _noise(rng, shape, 1.2 * k)
    pores = np.clip(-(pore_fine * 0.7 + pore_mid * 0.5) - 0.9, 0, None) * p.pores
    # wrinkles: thin creases along the zero lines of elongated noise, horizontal on the forehead and
    # oblique elsewhere, present only in some regions and deeper with age
    ang = _noise(rng, shape, 60 * k) * 0.6
    w1 = _noise(rng, shape, 5.0 * k, aniso=4.0, angle=0.0)
    w2 = _noise(rng, shape, 4.0 * k, aniso=3.5, angle=0.9)
    wmix = np.clip(0.5 + ang, 0, 1)
    crease = np.exp(-((w1 / 0.12) ** 2)) * wmix + np.exp(-((w2 / 0.12) ** 2)) * (1 - wmix)
    region = np.clip(_noise(rng, shape, 25 * k) * 0.8 + (p.age - 0.4), 0, 1)
    wrinkles = crease * region * (0.2 + 0.8 * p.age)
    # hair: brows / lashes from the scan's dark regions, stubble in its beard region, scalp from the top
    dots = np.clip(_noise(rng, shape, 0.5 * max(k, 1.0) ** 0.5, aniso=1.8, angle=1.2) - 0.6, 0, None)
    dots = np.clip(dots * 2.5, 0, 1)
    brow_region = np.clip((layout.darkness - 0.3) * 3.0, 0, 1)
    beard_region = np.clip(layout.beard * 1.5, 0, 1) * (1 - brow_region)
    hair = np.clip(
        brow_region * p.brow * (0.6 + 0.4 * dots)
        + beard_region * p.beard * (0.25 + dots * 0.9)
        + layout.scalp * p.scalp_hair * (0.3 + 0.7 * dots),
        0, 1,
    )
    return _SkinFields(hb, mel, pores, wrinkles, hair, dots)


def synthesize_subject(layout: HeadLayout, seed: int, subject: int) -> dict[str, np.ndarray]:
    """One subject: ``albedo`` (H x W x 3), ``specular`` (H x W x 1), ``displacement`` (H x W, canvas
    pixels), ``normal`` (H x W x 3 image values in [0, 1], OpenGL), all float32, 0 / flat outside the mask."""
    p = subject_params(seed, subject)
    shape = layout.mask.shape
    H, W = shape
    k = min(H, W) / 512.0  # features are laid out relative to the 512 reference canvas
    m = layout.mask.astype(np.float32)
    rng = _rng(seed, subject, 1)
    f = _skin_fields(layout, p, rng, k)
    hb, mel, pores, wrinkles, hair, dots = f.hb, f.mel, f.pores, f.wrinkles, f.hair, f.dots

    # --- albedo ----------------------------------------------------------------------------------
    base = np.array([0.86, 0.74, 0.66], np.float32)
    absorb = mel[..., None] * _MELANIN + hb[..., None] * _HAEMO + p.carotene * _CAROTENE
    skin_lin = base * np.exp(-absorb)
    skin_lin *= (1.0 - 0.3 * np.clip(pores, 0, 1) - 0.25 * wrinkles)[..., None]
    skin_lin *= np.power(layout.shading, 1.5)[..., None]
    hair_lin = maps.srgb_to_linear(np.asarray(p.hair_colour, np.float32))
    alb_lin = skin_lin * (1 - hair[..., None]) + hair_lin * hair[..., None]
    albedo = maps.linear_to_srgb(alb_lin) * m[..., None]

    # --- specular ---------------------------------------------------------------------------------
    spec = 0.32 * p.oiliness * np.clip(layout.oiliness, 0.2, 2.0)
    spec = spec * (1.0 - 0.6 * np.clip(pores, 0, 1)) * (1.0 - 0.5 * wrinkles) * (1.0 - 0.8 * hair)
    spec = spec * (1.0 + 0.12 * _noise(rng, shape, 4 * k))

    # --- displacement (canvas pixels) and normals --------------------------------------------------
    height = (
        layout.relief
        - 0.5 * k * pores
        - 1.0 * k * wrinkles
        + 0.3 * k * hair * dots
        + 0.12 * k * _noise(rng, shape, 1.5 * k) * (0.5 + p.pores)
    ) * m
    # cavities (fine-scale low points) hold less oil and see less light: a scan's cavity map
    fine = height - ndimage.gaussian_filter(height, 2.0 * k, mode="nearest")
    cavity = fine / max(float(fine[m > 0].std()) if (m > 0).any() else 1.0, 1e-6)
    spec = spec * np.clip(1.0 + 0.2 * cavity, 0.4, 1.6)
    specular = (np.clip(spec, 0, 1) * m)[..., None].astype(np.float32)
    normal = maps.displacement_to_normals(height.astype(np.float32), 1.0, "opengl")
    flat = np.array([0.0, 0.0, 1.0], np.float32)
    normal = np.where(m[..., None] > 0, normal, flat)
    return {
        "albedo": albedo.astype(np.float32),
        "specular": specular,
        "displacement": height.astype(np.float32),
        "normal": maps.encode_normals(normal),
    }


def synthesize_dataset(
    out: str | os.PathLike,
    subjects: int = 8,
    size: tuple[int, int] = (512, 512),
    seed: int = 0,
    *,
    overwrite: bool = False,
    head_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Write ``subjects`` synthetic subjects in the raw layout that `gantlitz prepare` reads.

    ``size`` is (height, width), each a multiple of 64.  Layout:
    ``OUT/mask.png``, ``OUT/subject000/{albedo,specular,normal}.png`` (16-bit), ``OUT/README.txt``.
    Written into a temporary sibling folder, then moved in: a new OUT appears complete; with
    ``overwrite`` only the files an earlier `synth` recorded in OUT (unchanged since) are replaced or
    removed, anything else is kept and listed, and a non-empty OUT without such a record is refused.
    """
    from tqdm.auto import tqdm

    height, width = size
    if isinstance(subjects, bool) or not isinstance(subjects, int) or not 1 <= subjects <= SUBJECTS_MAX:
        raise UsageError(f"--subjects must be 1 .. {SUBJECTS_MAX}, got {subjects!r}")
    if not (0 < height <= SIZE_MAX and 0 < width <= SIZE_MAX) or height % 64 or width % 64:
        raise UsageError(f"--size {width}x{height}: sides must be positive multiples of 64, at most {SIZE_MAX}")
    check_seed(seed, "--seed")
    out = Path(out).resolve()  # '.', '..' and a symlinked OUT: the folder itself, its staging beside it
    with writing("synth"):
        check_output_dir(out, inputs=[head_dir] if head_dir else [], overwrite=overwrite, what="synthetic dataset")
        layout = load_head(height, width, head_dir)
        tmp = sibling(out, f"synth-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        make_dirs(tmp)
        try:
            imageio.write_image(tmp / "mask.png", layout.mask.astype(np.float32), bits=8)
            for i in tqdm(range(subjects), desc="synth", unit="subject", disable=not progress):
                maps_i = synthesize_subject(layout, seed, i)
                for name in ("albedo", "specular", "normal"):
                    imageio.write_image(tmp / f"subject{i:03d}" / f"{name}.png", maps_i[name], bits=16)
            write_text(tmp / "README.txt", _readme(seed, subjects, width, height))
            install_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _readme(seed: int, subjects: int, width: int, height: int) -> str:
    """OUT/README.txt: what the folder holds and the scan's credit (its licence asks for it)."""
    return (
        f"Synthetic face textures made by `gantlitz synth` (seed {seed}, {subjects} subjects, "
        f"{width}x{height}).\nLayout: mask.png, subjectNNN/albedo.png (sRGB), specular.png, normal.png "
        "(tangent space, OpenGL, n*0.5+0.5), all 16-bit PNG.\n\n"
        f"The UV layout, mask and feature placement come from a real head scan:\n{ATTRIBUTION}\n"
        "The synthetic textures are derived from it and are shared under the same licence.\n"
    )
