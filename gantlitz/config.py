"""Typed configuration: network geometry (`ModelConfig`) and training schedule (`TrainConfig`).

Everything a run depends on lives in these two frozen dataclasses so that a run directory's
`config.json` fully describes it and can rebuild it (no pickles, no hidden globals).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from .errors import GantlitzError, UsageError
from .geometry import level0_unit, level_canvas, num_levels

MODALITIES: tuple[str, ...] = ("albedo", "specular", "displacement")
"""Modalities in the order of the stored channels (3 + 1 + 1)."""
MODALITY_CHANNELS: dict[str, int] = {"albedo": 3, "specular": 1, "displacement": 1}
DATA_CHANNELS = sum(MODALITY_CHANNELS.values())


def channel_slices(modalities: Sequence[str] = MODALITIES) -> dict[str, slice]:
    """The channels of each modality in a stack of `modalities` (in that order): the stored layout for
    the default, {"albedo": 0:3, "specular": 3:4, "displacement": 4:5}."""
    out, start = {}, 0
    for name in modalities:
        out[name] = slice(start, start + MODALITY_CHANNELS[name])
        start += MODALITY_CHANNELS[name]
    return out


CHANNEL_SLICES: dict[str, slice] = channel_slices()
"""The channels of each modality in the stored (and generated) 5-channel layout."""
CHANNEL_MODALITY: tuple[int, ...] = tuple(i for i, m in enumerate(MODALITIES) for _ in range(MODALITY_CHANNELS[m]))
"""The modality index of each of the 5 channels: (0, 0, 0, 1, 2)."""


def split_channels(stack: Any, axis: int = 1, modalities: Sequence[str] = MODALITIES) -> dict[str, Any]:
    """{modality: its channels} of an array or tensor stacking `modalities` along `axis` (views, no copy)."""
    axis = axis % stack.ndim
    lead = (slice(None),) * axis
    return {name: stack[lead + (sl,)] for name, sl in channel_slices(modalities).items()}


def keep_channels(keep: Any) -> Any:
    """A (B, 3) per-modality keep mask (array or tensor) → the (B, 5) mask of their channels."""
    return keep[:, list(CHANNEL_MODALITY)]

DiscPos = Literal["sin", "uv", "none"]
DiscPosInject = Literal["input", "project", "both"]


@dataclass(frozen=True)
class ModelConfig:
    """Generator and discriminator architecture, and the canvas they cover."""

    canvas_height: int = 4096
    """Canvas height in pixels (the dataset's; a multiple of the patch size)."""
    canvas_width: int = 6144
    """Canvas width in pixels (the dataset's; a multiple of the patch size)."""
    patch_size: int = 512
    """Side of a training patch in pixels, a power of two >= 8 (512 in the paper)."""
    z_dim: int = 512
    """Size of the latent z."""
    w_dim: int = 512
    """Size of the intermediate latent w (every style input)."""
    mapping_layers: int = 2
    """Fully connected layers of the mapping network z → w."""
    embed_dim: int = 512
    """Size of the learned per-modality embedding feeding the dual-style blocks."""
    pe_channels: int = 512
    """Channels of the sinusoidal positional-encoding input map (replaces StyleGAN2's constant)."""
    pe_learned: bool = False
    """Add a learned feature map over the padded level-0 canvas (zero at the start) to the encoding: a
    free code per canvas location, still a pure function of position (seamless); zero beyond the map."""
    pe_min_period: float = 3.0
    """Shortest period of G's encoding in level-0 pixels (one level-0 pixel = patch/4 canvas pixels).
    Periods shorter than a patch reach the output as an axis-aligned lattice unless D learns to reject
    them; layout needs only periods of a patch and longer (docs/training.md)."""
    channel_base: int = 16384
    """Generator feature channels at a level: min(channel_base / core size, channel_max)."""
    channel_max: int = 512
    """Most feature channels of any generator level."""
    g_halve_last: tuple[int, ...] = ()
    """Halvings of the last generator levels' filters, e.g. (1, 1) for GANtlitz-S's last two levels."""
    dual_style: bool = True
    """False = NO-DUAL ablation: one pass with 5 output channels, no modality embedding."""
    modality_bias: bool = True
    """False = NO-BIAS ablation: dual-style blocks without the per-modality bias offset."""
    d_channel_base: int = 16384
    """Discriminator channels at a resolution: min(d_channel_base / resolution, d_channel_max)."""
    d_channel_max: int = 512
    """Most channels of any discriminator layer."""
    d_halve_first: tuple[int, ...] = ()
    """Halvings of the first discriminator layers' filters, e.g. (1, 1) for GANtlitz-S."""
    disc_pos: DiscPos = "sin"
    """Location signal concatenated to D's input: 20 sinusoids, 2 raw UV channels, or none."""
    disc_pos_periods: int = 5
    """Periods of D's sinusoidal location channels (4 channels per period: sin/cos of row and column)."""
    disc_pos_inject: DiscPosInject = "input"
    """Where D receives the location: as input channels (the paper), as a projection of the patch
    centre's encoding onto D's last features (conditional-GAN projection), or both."""
    disc_locate: bool = False
    """D gets a second head that regresses the patch's canvas location from its content (trained on
    reals); G is then penalised when D places a fake elsewhere (`TrainConfig.locate_weight`). A dense,
    direct "this belongs there" signal, which the location inputs alone leave to D's discretion."""
    disc_pos_scale: float = 0.1
    """Amplitude of D's location channels. At 1 the 20 unit sinusoids carry most of the first layer's
    input variance and D stays at chance (loss 2·ln 2) while G trains; at 0.1 D separates real from fake
    within a few hundred steps (measured on `tiny`, docs/training.md)."""
    conv_clamp: float | None = 256.0
    """Clamp of conv outputs, which keeps reduced-precision training finite."""

    def __post_init__(self) -> None:
        p = self.patch_size
        if p < 8 or p & (p - 1):
            raise ValueError(f"patch_size must be a power of two >= 8, got {p}")
        for name, size in (("canvas_height", self.canvas_height), ("canvas_width", self.canvas_width)):
            if size <= 0 or size % p:
                raise ValueError(f"{name}={size} must be a positive multiple of patch_size={p}")

    @property
    def num_levels(self) -> int:
        """Synthesis levels from the 4-pixel core up to the patch size (8 for 512)."""
        return num_levels(self.patch_size)

    @property
    def out_channels(self) -> int:
        """Generator output channels per pass: RGB per modality, or all 5 at once without dual styles."""
        return 3 if self.dual_style else DATA_CHANNELS

    def g_channels(self) -> list[int]:
        """Feature channels per generator level: min(base / core, max), last levels optionally halved."""
        chans = [min(self.channel_base // (4 << lvl), self.channel_max) for lvl in range(self.num_levels)]
        for i, halvings in enumerate(reversed(self.g_halve_last), start=1):
            chans[-i] = max(chans[-i] >> halvings, 1)
        return chans

    def d_channels(self) -> list[int]:
        """Discriminator channels from the patch resolution down to 4: min(base / res, max)."""
        res = [self.patch_size >> i for i in range(self.num_levels)]
        chans = [min(self.d_channel_base // r, self.d_channel_max) for r in res]
        for i, halvings in enumerate(self.d_halve_first):
            chans[i] = max(chans[i] >> halvings, 1)
        return chans


@dataclass(frozen=True)
class AugmentConfig:
    """Discriminator augmentation (paper §4.2; docs/training.md): adaptive ADA subset, constant mid-band
    filter, modality dropout."""

    enabled: bool = True
    """False turns every augmentation off (D sees the patches as they are)."""
    ada_target: float = 0.6
    """ADA's target for E[sign(D(real))]: p rises while the reals' sign mean is above it."""
    ada_interval: int = 4
    """Steps between adjustments of p."""
    ada_kimg: float = 100.0
    """How many thousand images it takes p to move from 0 to 1 at full speed."""
    p_init: float = 0.0
    """Adaptive probability p at the start of a run."""
    noise: bool = True
    """Additive Gaussian noise (an ADA transform, fires with p)."""
    cutout: bool = True
    """Cutout of a square (an ADA transform, fires with p)."""
    rotate: bool = True
    """Rotation (an ADA transform, fires with p)."""
    scale: bool = True
    """Isotropic scaling (an ADA transform, fires with p)."""
    translate: bool = True
    """Translation (an ADA transform, fires with p)."""
    midband_p: float = 0.85
    """Probability of the mid-band (difference of Gaussians) filter, constant unless adaptive_freq."""
    adaptive_freq: bool = False
    """ADAPTIVE-FREQ ablation: the mid-band filter follows the adaptive p instead of a constant."""
    modality_dropout: bool = False
    """GANtlitz-S: drop one random modality per sample for fakes (inside G) and reals."""
    noise_std: float = 0.1
    """Additive noise: σ = |N(0, noise_std)| per sample (ADA's default)."""
    cutout_size: float = 0.5
    """Side of the cutout square, as a fraction of the patch."""
    rotate_max: float = 1.0
    """Rotation angle ~ U(−π·rotate_max, π·rotate_max): 1 is the full circle."""
    scale_std: float = 0.2
    """Isotropic scale 2^N(0, scale_std)."""
    translate_max: float = 0.125
    """Translation ~ U(−translate_max, translate_max) of the patch per axis."""
    sigma_min: float = 0.5
    """Narrowest mid-band Gaussian width in pixels."""
    sigma_max: float | None = None
    """Widest mid-band Gaussian width in pixels; None = patch / 8 (the 3σ support fits the FFT padding)."""
    ratio_min: float = 1.5
    """Smallest width ratio σ2/σ1 of the difference of Gaussians."""
    ratio_max: float = 4.0
    """Largest width ratio σ2/σ1 (capped at sigma_max / sigma_min)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule and loop settings (paper §4.4.5; docs/training.md)."""

    batch: int = 4
    """Samples per step per process; each sample is generated once per modality."""
    group_size: int = 2
    """Consecutive samples drawn from the same patch location; D's minibatch-stddev groups are these."""
    lr: float = 0.003
    """Adam learning rate of G and D (after the warm-up)."""
    betas: tuple[float, float] = (0.0, 0.99)
    """Adam betas of G and D."""
    warmup_steps: int = 2000
    """Steps over which the learning rate ramps linearly from 0 (`train.losses.warmup_lr`)."""
    r1_gamma: float = 2.0
    """Weight γ of the R1 penalty γ/2·|∇D(real)|² on the augmented reals."""
    locate_weight: float = 1.0
    """Weight of the location-regression loss for D (reals) and G (fakes) when D has the head
    (`ModelConfig.disc_locate`): mean squared error of the predicted patch centre in [-1, 1] canvas units."""
    r1_interval: int = 16
    """Lazy regularisation: R1 every this many steps, scaled by the interval."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of G's weights (G_ema, used for generation)."""
    ema_rampup: float | None = None
    """StyleGAN2-ADA's EMA ramp-up: the averaging horizon capped at ema_rampup·step; None = off."""
    style_mixing: float = 0.0
    """Probability of mixing two latents at a random style input (0 in the paper)."""
    steps: int = 100_000
    """Training steps of the run."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many steps (and at the end)."""
    preview_every: int = 1000
    """Write preview images every this many steps; 0 turns previews off."""
    log_every: int = 20
    """Log the scalars every this many steps."""
    seed: int = 0
    """Seeds every random stream of the run (docs/architecture.md, "Random streams")."""
    precision: Literal["fp32", "tf32", "bf16"] = "tf32"
    """Float precision of the passes: fp32, TF32 matmuls/convolutions, or bf16 autocast."""
    compile: bool = False
    """`torch.compile` G and D."""
    flip: bool = True
    """Also train on horizontally mirrored subjects (when the dataset allows flipping)."""
    workers: int = 2
    """DataLoader worker processes (0: load in the training process)."""
    keep_checkpoints: int = 3
    """Checkpoints kept in RUN/checkpoints (older ones are deleted after each save)."""
    g_chunks: int = 1
    """The G step runs in this many chunks of whole location groups, gradients accumulated: G's autograd
    graph (the largest memory item of a step) shrinks by the same factor, at the cost of smaller passes."""
    moment_weight: float = 0.0
    """Weight of per-location moment matching (`train.objectives.MomentMatch`): the generated mean of
    every cell at a patch's location against the data's mean there. 0 turns it off."""
    moment_cells: int = 8
    """Cells per patch side for moment matching (a power of two dividing the patch size)."""
    whole_level: int | None = None
    """Whole-canvas view (`train.objectives.WholeCanvas`): a second discriminator judges G's skip output
    at this synthesis level over the whole canvas against the real maps at that size. None turns it off."""
    whole_weight: float = 1.0
    """Weight of the whole-canvas view's generator loss."""
    whole_every: int = 1
    """Run the whole-canvas view every this many steps."""
    whole_moment_weight: float = 0.0
    """Weight of moment matching on the whole-canvas view: the batch's mean coarse map against the data's
    mean at that size, every pixel of it (a denser signal than per patch). 0 turns it off."""
    whole_moments: int = 1
    """Moments matched on the whole view: 1, the per-pixel mean; 2, also the mean of squares (with the mean
    matched, the spread of samples around it)."""
    location_stride: int | None = None
    """Stride of the training location grid in pixels; None is the paper's half patch (50 % overlap).
    The finest possible is the level-0 unit (a quarter patch): every offset the encoding aligns to."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Discriminator augmentation (`AugmentConfig`)."""


@dataclass(frozen=True)
class Preset:
    """A named pair of model and training settings; `global_res` marks the whole-image baseline."""

    name: str
    """The preset's name (`gantlitz.presets.names()`)."""
    model: ModelConfig
    """Network architecture and canvas."""
    train: TrainConfig
    """Optimisation schedule and loop settings."""
    global_res: int | None = None
    """mmstylegan2-ada: train on whole textures resized to global_res x global_res."""
    description: str = ""
    """One line for `gantlitz info`."""

    def with_canvas(self, height: int, width: int) -> "Preset":
        """The preset on a dataset's canvas (the manifest drives the geometry)."""
        if self.global_res is not None:
            return self
        return dataclasses.replace(
            self, model=dataclasses.replace(self.model, canvas_height=height, canvas_width=width)
        )


def to_dict(obj: Any) -> Any:
    """Dataclass tree → JSON-ready dict."""
    return json.loads(json.dumps(dataclasses.asdict(obj)))


_RETIRED_MODEL: dict[str, Any] = {"layout_level": None, "pe_kind": "axis"}
"""Model settings measured and removed (docs/training.md): a stored configuration that holds the value
that is now the only behaviour still loads; any other value can not be rebuilt."""


def _current_model(model: dict[str, Any]) -> dict[str, Any]:
    model = dict(model)
    for key, kept in _RETIRED_MODEL.items():
        if key in model and model.pop(key) != kept:
            raise ConfigError(f"model.{key} was removed (measured and rejected, docs/training.md); this "
                              f"configuration needs it and can not be rebuilt")
    return model


def preset_from_dict(data: dict[str, Any]) -> Preset:
    """Inverse of `to_dict(preset)`; unknown keys are an error so stale configs are not half-read."""
    train = dict(data["train"])
    train["augment"] = AugmentConfig(**train.get("augment", {}))
    if "betas" in train:
        train["betas"] = tuple(train["betas"])
    return Preset(
        name=data["name"],
        model=ModelConfig(**{**_current_model(data["model"]), "g_halve_last": tuple(data["model"]["g_halve_last"]),
                           "d_halve_first": tuple(data["model"]["d_halve_first"])}),
        train=TrainConfig(**train),
        global_res=data.get("global_res"),
        description=data.get("description", ""),
    )


# --------------------------------------------------------------------------------------------------
# Overrides: `--set KEY=VALUE` (and the training flags) parsed, coerced to the field types, validated
# --------------------------------------------------------------------------------------------------


class ConfigError(GantlitzError, ValueError):
    """Bad preset / override / dataset combination."""


_SECTIONS: dict[str, type] = {"model": ModelConfig, "train": TrainConfig, "train.augment": AugmentConfig}
_PRESET_FIELDS = {"global_res", "description"}


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """["train.lr=0.002", "global_res=64"] → {"train.lr": "0.002", "global_res": "64"}."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set model.channel_max=32")
        out[key] = value.strip()
    return out


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def canonical_key(key: str) -> str:
    """'batch' → 'train.batch', 'midband_p' → 'train.augment.midband_p'; full paths are checked."""
    key = key.strip()
    if key.startswith("preset."):
        key = key[len("preset."):]
    if key.startswith("augment."):  # the augmentation settings' own section name, as `info` prints it
        key = f"train.{key}"
    if key in _PRESET_FIELDS:
        return key
    section, _, name = key.rpartition(".")
    if section:
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(f"unknown setting {key!r}: sections are model., train., train.augment.")
        if name not in _field_names(cls) or name == "augment":
            raise ConfigError(
                f"unknown setting {key!r}; {section} has: {', '.join(n for n in _field_names(cls) if n != 'augment')}"
            )
        return key
    hits = [f"{sec}.{key}" for sec, cls in _SECTIONS.items() if key in _field_names(cls) and key != "augment"]
    if len(hits) == 1:
        return hits[0]
    if key in ("name", "model", "train", "augment"):
        raise ConfigError(f"{key!r} can not be set; set its fields (e.g. train.batch=4) or choose --preset")
    raise ConfigError(
        f"unknown setting {key!r}; use model.FIELD, train.FIELD, train.augment.FIELD or global_res "
        f"(see `gantlitz info --preset NAME` for the fields)"
    )


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a CLI string (or a Python value) to the dataclass field type `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("none", "null", ""))):
            return None
        problems = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                problems.append(str(exc))
        raise ConfigError("; ".join(problems) or f"{key}: invalid value {value!r}")
    if origin is Literal:
        for option in args:
            if value == option or (isinstance(value, str) and str(option) == value.strip()):
                return option
        raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            items: list[Any] = [v.strip() for v in text.split(",") if v.strip()] if text else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"{key}: expected a comma-separated list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in items)
        if len(items) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} comma-separated values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(items, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        return str(value)
    raise ConfigError(f"{key}: fields of type {tp} can not be set from the command line")


def apply_overrides(preset: Preset, overrides: Mapping[str, Any] | Sequence[str] | None) -> Preset:
    """The preset with dotted-key overrides applied (values coerced to the field types)."""
    if not overrides:
        return preset
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(list(overrides))
    by_section: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for raw_key, value in overrides.items():
        key = canonical_key(raw_key)
        if key in _PRESET_FIELDS:
            hints = typing.get_type_hints(Preset)
            top[key] = _coerce(value, hints[key], key)
            continue
        section, _, name = key.rpartition(".")
        hints = typing.get_type_hints(_SECTIONS[section])
        by_section.setdefault(section, {})[name] = _coerce(value, hints[name], key)
    try:
        aug = dataclasses.replace(preset.train.augment, **by_section.get("train.augment", {}))
        train_cfg = dataclasses.replace(preset.train, augment=aug, **by_section.get("train", {}))
        model = dataclasses.replace(preset.model, **by_section.get("model", {}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid override: {exc}") from None
    return dataclasses.replace(preset, model=model, train=train_cfg, **top)


SEED_MAX = 2**32 - 1
"""Seeds are 32-bit: a larger one would repeat a smaller one (the generators hash 32 bits)."""
SEEDS_MAX = 100_000
"""Most seeds (textures) one command takes over all its ranges."""
CHANNELS_MAX = 4096
"""No network of this project has wider layers; a typo (or a tampered file) asking for more is refused
before anything is allocated."""
CANVAS_MAX = 65536
"""Canvas sides beyond this are refused (a 64K x 64K canvas is already 20 GB per modality at uint16)."""

_INT_RANGES: dict[str, dict[str, tuple[int, int | None]]] = {
    "model": {"z_dim": (1, CHANNELS_MAX), "w_dim": (1, CHANNELS_MAX), "mapping_layers": (1, 32),
              "embed_dim": (1, CHANNELS_MAX), "pe_channels": (1, CHANNELS_MAX), "channel_base": (1, 2**20),
              "channel_max": (1, CHANNELS_MAX), "d_channel_base": (1, 2**20), "d_channel_max": (1, CHANNELS_MAX),
              "disc_pos_periods": (1, 32), "canvas_height": (8, CANVAS_MAX), "canvas_width": (8, CANVAS_MAX),
              "patch_size": (8, 4096)},
    "train": {"batch": (1, 4096), "group_size": (1, 4096), "warmup_steps": (0, None), "r1_interval": (1, None),
              "steps": (0, None), "checkpoint_every": (1, None), "preview_every": (0, None), "log_every": (1, None),
              "seed": (0, SEED_MAX), "workers": (0, 256), "keep_checkpoints": (1, None), "g_chunks": (1, 4096)},
    "train.augment": {"ada_interval": (1, None)},
}
"""Closed ranges of the integer fields (None: no upper bound)."""

_FLOAT_RANGES: dict[str, dict[str, tuple[float, float, bool]]] = {
    "model": {"pe_min_period": (2.0, math.inf, False), "disc_pos_scale": (0.0, math.inf, False),
              "conv_clamp": (0.0, math.inf, True)},
    "train": {"lr": (0.0, math.inf, True), "r1_gamma": (0.0, math.inf, False), "locate_weight": (0.0, math.inf, False),
              "ema_decay": (0.0, 1.0, False), "ema_rampup": (0.0, math.inf, True), "style_mixing": (0.0, 1.0, False)},
    "train.augment": {"ada_target": (0.0, 1.0, False), "p_init": (0.0, 1.0, False), "midband_p": (0.0, 1.0, False),
                      "cutout_size": (0.0, 1.0, False), "noise_std": (0.0, math.inf, False),
                      "rotate_max": (0.0, 1.0, False), "scale_std": (0.0, math.inf, False),
                      "translate_max": (0.0, 1.0, False), "ada_kimg": (0.0, math.inf, True),
                      "sigma_min": (0.0, math.inf, True), "sigma_max": (0.0, math.inf, True),
                      "ratio_min": (1.0, math.inf, True), "ratio_max": (1.0, math.inf, True)},
}
"""(low, high, low excluded) of the float fields; every float must also be finite. ema_decay < 1 is
checked on its own (an open upper end)."""


def check_seed(seed: Any, name: str = "seed") -> int:
    """`seed` as an int if it is one in 0 .. 2^32-1, else a `UsageError` saying the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UsageError(f"{name} {seed!r} out of range (0 .. 2^32-1 = {SEED_MAX}: larger seeds would repeat "
                          "smaller ones)")
    return seed


TRUNCATION_MAX = 2.0
"""|psi| beyond this moves w so far past the average that every map saturates (1e6 clips every pixel)."""


def check_truncation(psi: float) -> float:
    """The truncation psi if it is finite and |psi| <= TRUNCATION_MAX, else a `UsageError`."""
    if not (math.isfinite(psi) and abs(psi) <= TRUNCATION_MAX):
        raise UsageError(f"--truncation {psi}: must be a finite number in [-{TRUNCATION_MAX:g}, {TRUNCATION_MAX:g}] "
                         "(1 = none, 0 = the average face)")
    return float(psi)


def _type_problem(value: Any, tp: Any) -> bool:
    """Whether `value` is not of the field type `tp` (ints are floats too; bools are no numbers)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return all(_type_problem(value, a) for a in args)
    if origin is Literal:
        return value not in args
    if origin is tuple:
        items = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        return (not isinstance(value, tuple) or len(value) != len(items)
                or any(_type_problem(v, a) for v, a in zip(value, items)))
    if tp is type(None):
        return value is not None
    if tp is float:
        return isinstance(value, bool) or not isinstance(value, (int, float))
    if tp is int:
        return isinstance(value, bool) or not isinstance(value, int)
    return not isinstance(value, tp)


def _section_problems(obj: Any, section: str) -> list[str]:
    """Every field of one section: its type, finiteness and range."""
    hints, bad = typing.get_type_hints(type(obj)), []
    ints, floats = _INT_RANGES.get(section, {}), _FLOAT_RANGES.get(section, {})
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), f"{section}.{f.name}"
        if dataclasses.is_dataclass(value):
            continue
        if _type_problem(value, hints[f.name]):
            bad.append(f"{key}={value!r} is not of type {hints[f.name]}")
        elif isinstance(value, float) and not math.isfinite(value):
            bad.append(f"{key}={value} is not finite")
        elif f.name in ints and value is not None:
            lo, hi = ints[f.name]
            if value < lo or (hi is not None and value > hi):
                bad.append(f"{key}={value} must lie in [{lo}, {hi if hi is not None else 'inf'}]")
        elif f.name in floats and value is not None:
            lo, hi, open_low = floats[f.name]
            if (value <= lo if open_low else value < lo) or value > hi:
                bad.append(f"{key}={value} must be {'>' if open_low else '>='} {lo:g}" + (f" and <= {hi:g}" if
                                                                                           math.isfinite(hi) else ""))
    return bad


def _model_rules(cfg: ModelConfig) -> list[str]:
    """The rules between model fields (levels, halvings)."""
    bad, levels = [], cfg.num_levels
    for name in ("g_halve_last", "d_halve_first"):
        halvings = getattr(cfg, name)
        if len(halvings) > levels or any(h < 0 or h > 12 for h in halvings):
            bad.append(f"model.{name}={halvings}: at most {levels} halvings of 0 .. 12 each")
    return bad


def _train_rules(cfg: TrainConfig) -> list[str]:
    """The rules between training fields (groups, chunks, betas, the ADA and mid-band ranges)."""
    bad = []
    if cfg.batch % cfg.group_size:
        bad.append(f"train.batch {cfg.batch} must be a multiple of group_size {cfg.group_size} (batches are "
                   "groups of samples from one patch location)")
    elif (cfg.batch // cfg.group_size) % cfg.g_chunks:
        bad.append(f"train.g_chunks={cfg.g_chunks} must divide the batch's {cfg.batch // cfg.group_size} location groups")
    if not all(0 <= b < 1 for b in cfg.betas):
        bad.append(f"train.betas={cfg.betas}: Adam's betas must lie in [0, 1)")
    if not cfg.ema_decay < 1:
        bad.append(f"train.ema_decay={cfg.ema_decay} must be < 1")
    aug = cfg.augment
    if aug.sigma_max is not None and aug.sigma_max < aug.sigma_min:
        bad.append(f"train.augment: need sigma_min <= sigma_max, got {aug.sigma_min}, {aug.sigma_max}")
    if aug.ratio_min > aug.ratio_max:
        bad.append(f"train.augment: need 1 < ratio_min <= ratio_max, got {aug.ratio_min}, {aug.ratio_max}")
    return bad


def _raise(bad: list[str]) -> None:
    if bad:
        raise ConfigError("invalid settings: " + "; ".join(bad))


def validate_model(cfg: ModelConfig) -> None:
    """Refuse a model no network can have (before anything is built): types, ranges, the levels' rules."""
    _raise(_section_problems(cfg, "model") or _model_rules(cfg))


def validate_augment(cfg: AugmentConfig) -> None:
    """Refuse augmentation settings outside their ranges (probabilities in [0, 1], widths positive)."""
    _raise(_section_problems(cfg, "train.augment"))


def validate_train(cfg: TrainConfig) -> None:
    """Refuse training settings no run can use (checked when a preset is resolved)."""
    _raise(_section_problems(cfg, "train") + _section_problems(cfg.augment, "train.augment") or _train_rules(cfg))


def validate(preset: Preset) -> Preset:
    """The one gate for a preset (from the CLI, `--set`, a config file or a checkpoint), run before any
    folder is created or network built: every field's type, finiteness and range and the rules between
    them. Returns the preset; raises `ConfigError` listing every problem found."""
    if preset.global_res is not None and (_type_problem(preset.global_res, int) or preset.global_res < 8
                                          or preset.global_res > 4096 or preset.global_res & (preset.global_res - 1)):
        raise ConfigError(f"global_res must be a power of two in 8 .. 4096, got {preset.global_res!r}")
    validate_model(preset.model)
    validate_train(preset.train)
    validate_preset(preset)
    return preset


def validate_preset(preset: Preset) -> None:
    """Refuse training settings the preset's model can not run (the location grid, the moment cells and
    the whole-canvas level depend on the patch geometry)."""
    cfg, model = preset.train, preset.model
    if not (math.isfinite(cfg.moment_weight) and cfg.moment_weight >= 0):
        raise ConfigError(f"train.moment_weight must be a finite number >= 0, got {cfg.moment_weight}")
    cells = cfg.moment_cells
    if cells < 1 or cells & (cells - 1) or model.patch_size % cells:
        raise ConfigError(f"train.moment_cells={cells} must be a power of two dividing the patch size "
                          f"{model.patch_size}")
    for name in ("whole_weight", "whole_moment_weight"):
        if not (math.isfinite(getattr(cfg, name)) and getattr(cfg, name) >= 0):
            raise ConfigError(f"train.{name} must be a finite number >= 0, got {getattr(cfg, name)}")
    if cfg.whole_every < 1:
        raise ConfigError(f"train.whole_every must be >= 1, got {cfg.whole_every}")
    if cfg.whole_moments not in (1, 2):
        raise ConfigError(f"train.whole_moments must be 1 (means) or 2 (means and squares), got {cfg.whole_moments}")
    stride, unit = cfg.location_stride, level0_unit(model.patch_size)
    if stride is not None and not (0 < stride <= model.patch_size and stride % unit == 0
                                   and (model.canvas_height - model.patch_size) % stride == 0
                                   and (model.canvas_width - model.patch_size) % stride == 0):
        raise ConfigError(f"train.location_stride={stride} must be a multiple of the level-0 unit {unit}, at most "
                          f"the patch size {model.patch_size}, and tile the canvas "
                          f"{model.canvas_width}x{model.canvas_height}")
    if cfg.whole_level is None:
        return
    if preset.global_res is not None:
        raise ConfigError("train.whole_level: the global baseline already sees whole textures")
    levels = model.num_levels
    if not 0 <= cfg.whole_level < levels:
        raise ConfigError(f"train.whole_level={cfg.whole_level} must be a synthesis level 0..{levels - 1}")
    h, w = level_canvas(model.canvas_height, model.canvas_width, model.patch_size, cfg.whole_level)
    short = min(h, w)
    if short < 8 or short & (short - 1) or h % (short // 4) or w % (short // 4):
        raise ConfigError(
            f"train.whole_level={cfg.whole_level}: the canvas at that level is {w}x{h}; the whole-canvas "
            "discriminator needs a power-of-two short side >= 8 that, divided by 4, divides both sides")
