"""Image feature extractors for KID: the FID Inception-v3 (local weight file) and a download-free default.

Every extractor follows `FeatureExtractor`: called with a float tensor B×3×H×W in [0, 1] it returns
B×D features (no gradients).  `build_extractor(name, weights, device)` picks one by name.

- `inception`: Inception-v3 with the architecture of the 2015-12-05 TensorFlow graph that FID/KID use
  (the variant pytorch-fid patches into torchvision's Inception3: average pools that ignore padding,
  a max pool in the last block), written here from the architecture description.  Its parameter names
  match pytorch-fid's weight file `pt_inception-2015-12-05-6726825d.pth`, which loads with
  `torch.load(..., weights_only=True)` (never unpickling code); a `.safetensors` file with the same
  names works too.  Features: the 2048-d final average pool, input resized to 299×299 bilinearly and
  scaled to [-1, 1], exactly as pytorch-fid / torchmetrics compute them.
- `local` (default): a fixed, seeded random-weight multi-scale CNN.  Random convolutional features
  are a valid (characteristic-enough) basis for MMD two-sample comparisons and need no download, but
  the numbers are NOT comparable with Inception KID or with other seeds/resolutions of this extractor.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Iterable, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, InputNotFoundError

__all__ = [
    "FeatureExtractor",
    "InceptionV3FID",
    "LocalFeatures",
    "load_inception",
    "load_state_dict_file",
    "build_extractor",
    "extract_features",
    "EXTRACTORS",
    "INCEPTION_FILE",
]

log = logging.getLogger(__name__)

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{INCEPTION_FILE}"
EXTRACTORS = ("local", "inception")


@runtime_checkable
class FeatureExtractor(Protocol):
    """Images B×3×H×W float in [0, 1] → features B×D (float tensor on the extractor's device)."""

    name: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


# --------------------------------------------------------------------------------------------------
# FID Inception-v3
# --------------------------------------------------------------------------------------------------


class _ConvBN(nn.Module):
    """Conv (no bias) → BatchNorm (eps 1e-3, inference statistics) → ReLU; names `conv`, `bn`."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's SAME average pool divides by the number of valid (non-padded) inputs.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    """35×35 block: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avg-pool→1×1 (64+64+96+pool)."""

    def __init__(self, cin: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(cin, 64, 1)
        self.branch5x5_1 = _ConvBN(cin, 48, 1)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1)
        self.branch_pool = _ConvBN(cin, pool, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class _ReduceB(nn.Module):
    """35→17 reduction: 3×3/2 | 1×1→3×3→3×3/2 | max-pool/2 (384+96+cin)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (192 ×4 outputs)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = _ConvBN(cin, 192, 1)
        self.branch7x7_1 = _ConvBN(cin, c7, 1)
        self.branch7x7_2 = _ConvBN(c7, c7, **row)
        self.branch7x7_3 = _ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = _ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = _ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = _ConvBN(c7, 192, **row)
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class _ReduceD(nn.Module):
    """17→8 reduction: 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | max-pool/2 (320+192+cin)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = _ConvBN(cin, 192, 1)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):
    """8×8 block with split 1×3 / 3×1 branches (320+768+768+192 = 2048).

    `max_pool=True` is the quirk of the FID graph's last block (Mixed_7c): its pool branch uses a
    3×3 max pool where the paper's architecture (and Mixed_7b) use an average pool.
    """

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(cin, 320, 1)
        self.branch3x3_1 = _ConvBN(cin, 384, 1)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(s), self.branch3x3_2b(s)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class InceptionV3FID(nn.Module):
    """The FID Inception-v3 up to its 2048-d average pool (plus the unused 1008-way `fc` of the file)."""

    name = "inception"
    dim = 2048
    input_size = 299

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3)
        self.Mixed_5b = _BlockA(192, 32)
        self.Mixed_5c = _BlockA(256, 64)
        self.Mixed_5d = _BlockA(288, 64)
        self.Mixed_6a = _ReduceB(288)
        self.Mixed_6b = _BlockC(768, 128)
        self.Mixed_6c = _BlockC(768, 160)
        self.Mixed_6d = _BlockC(768, 160)
        self.Mixed_6e = _BlockC(768, 192)
        self.Mixed_7a = _ReduceD(768)
        self.Mixed_7b = _BlockE(1280, max_pool=False)
        self.Mixed_7c = _BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)
        self.eval()
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file, or of a `.pth`/`.pt` read with `torch.load(weights_only=True)`."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(
            f"Inception weight file not found: {path} (download {INCEPTION_URL}; see docs/evaluation.md)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # unpicklable / unsafe content is refused, never executed
        raise InputError(f"{path}: not a plain PyTorch state dict loadable with weights_only=True ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a dict of tensors (a state dict), got {type(state).__name__}")
    return dict(state)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_inception(path: str | Path, device: str | torch.device = "cpu") -> InceptionV3FID:
    """The FID Inception-v3 with weights from `path` (.pth state dict or .safetensors, same names).

    Keys must match exactly, apart from the optional `fc.*` classifier and BatchNorm
    `num_batches_tracked` counters; missing keys, unexpected keys or wrong shapes raise a `ValueError`
    naming the file.  A file name ending in `-<8 hex digits>.pth` (torch.hub convention) is checked
    against the file's SHA-256 and a mismatch is logged as a warning.
    """
    path = Path(path)
    state = load_state_dict_file(path)
    net = InceptionV3FID()
    expected = {k: v for k, v in net.state_dict().items()}
    optional = {k for k in expected if k.startswith("fc.") or k.endswith("num_batches_tracked")}
    missing = sorted(k for k in expected if k not in state and k not in optional)
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or wrong:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
                parts.append(f"{title}: {shown}")
        raise InputError(
            f"{path} is not the FID Inception-v3 weight file ({INCEPTION_FILE}): " + "; ".join(parts)
        )
    net.load_state_dict({k: state[k].to(torch.float32) if state[k].is_floating_point() else state[k]
                         for k in state}, strict=False)
    match = re.search(r"-([0-9a-f]{8,})\.(pth|pt)$", path.name)
    if match:
        digest = _sha256(path)
        if not digest.startswith(match.group(1)):
            log.warning("%s: SHA-256 %s does not start with %s from its name", path, digest[:16], match.group(1))
        else:
            log.info("%s: SHA-256 prefix %s verified", path.name, match.group(1))
    return net.to(device).eval()


# --------------------------------------------------------------------------------------------------
# Local, download-free extractor
# --------------------------------------------------------------------------------------------------


class LocalFeatures(nn.Module):
    """Fixed random-weight multi-scale CNN: mean and std of each stage's activations (no download).

    Input B×3×H×W in [0, 1] is resized to `resolution`² (anti-aliased bilinear when shrinking), scaled
    to [-1, 1] and passed through `len(widths)` stages of [3×3 conv (reflect padding) → leaky ReLU →
    3×3 conv → leaky ReLU → 2× average pool].  The weights are drawn from a `torch.Generator` seeded
    with `seed` (He-normal filters, small random biases), so every machine builds the same network.
    The features are the per-channel spatial mean and standard deviation after every stage plus the
    input's colour mean/std: 2·(3 + Σ widths) values (966 with the defaults).  Receptive fields grow
    from 6 to 76 pixels of the resized input, so the stages cover colour, fine texture and coarse
    structure.  Values are O(1), suited to the polynomial kernel's x·y/d scaling.
    """

    name = "local"

    def __init__(self, resolution: int = 256, widths: Iterable[int] = (32, 64, 128, 256), seed: int = 0) -> None:
        super().__init__()
        self.resolution = int(resolution)
        self.widths = tuple(int(w) for w in widths)
        self.seed = int(seed)
        gen = torch.Generator().manual_seed(self.seed)
        convs = []
        cin = 3
        for width in self.widths:
            for c_in in (cin, width):
                w = torch.randn(width, c_in, 3, 3, generator=gen) * math.sqrt(2.0 / (c_in * 9))  # He-normal
                conv = nn.Conv2d(c_in, width, 3, padding=1, padding_mode="reflect")
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(0.1 * torch.randn(width, generator=gen))
                convs.append(conv)
            cin = width
        self.convs = nn.ModuleList(convs)
        self.dim = 2 * (3 + sum(self.widths))
        self.eval()
        self.requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.resolution, self.resolution)
        shrink = images.shape[-2] > size[0] or images.shape[-1] > size[1]
        x = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        x = x * 2.0 - 1.0
        feats = [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        for i in range(len(self.widths)):
            x = F.leaky_relu(self.convs[2 * i](x), 0.2)
            x = F.leaky_relu(self.convs[2 * i + 1](x), 0.2)
            x = F.avg_pool2d(x, 2)
            feats += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        return torch.cat(feats, dim=1)


# --------------------------------------------------------------------------------------------------
# Factory and batch extraction
# --------------------------------------------------------------------------------------------------


def build_extractor(
    name: str = "local", weights: str | Path | None = None, device: str | torch.device = "cpu", **kwargs
) -> nn.Module:
    """`local` (no download; kwargs go to `LocalFeatures`) or `inception` (needs `weights`)."""
    if name == "local":
        if weights is not None:
            raise InputError("the local extractor takes no weight file; use --features inception with --weights")
        return LocalFeatures(**kwargs).to(device)
    if name == "inception":
        if weights is None:
            raise InputError(
                f"--features inception needs --weights PATH to {INCEPTION_FILE} (download it from "
                f"{INCEPTION_URL}; no download happens here)"
            )
        return load_inception(weights, device)
    raise InputError(f"unknown feature extractor {name!r}; choose one of {', '.join(EXTRACTORS)}")


def extract_features(
    extractor,
    images: np.ndarray,
    *,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    progress: bool = False,
    desc: str = "features",
) -> np.ndarray:
    """Features (N, D) float64 of images N×H×W×3 (float in [0, 1], or uint8), batch by batch."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"images must be N×H×W×3, got shape {arr.shape}")
    scale = 1.0 / 255.0 if arr.dtype == np.uint8 else 1.0
    out = []
    starts = range(0, arr.shape[0], batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    with torch.inference_mode():
        for start in starts:
            batch = torch.from_numpy(np.ascontiguousarray(arr[start : start + batch_size], dtype=np.float32))
            batch = (batch * scale).clamp(0.0, 1.0).permute(0, 3, 1, 2).to(device)
            out.append(extractor(batch).double().cpu().numpy())
    feats = np.concatenate(out, axis=0)
    if not np.all(np.isfinite(feats)):
        raise ValueError("feature extractor produced non-finite values")
    return feats
