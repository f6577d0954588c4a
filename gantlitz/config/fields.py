"""The settings a run depends on: `ModelConfig`, `AugmentConfig`, `TrainConfig` and the `Preset` pairing them.

Frozen dataclasses, so a run directory's `config.json` fully describes a run and rebuilds it (no pickles,
no hidden globals); `to_dict` / `preset_from_dict` are the JSON round trip.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from ..geometry import num_levels
from .channels import DATA_CHANNELS

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

