"""GANtlitz: a patch-based StyleGAN2 for seamless ultra-high-resolution multi-modal face textures."""

__version__ = "0.1.0"


def load(path, device="cpu", precision="auto", compile=False, **kwargs):
    """Load a checkpoint or run directory as a `gantlitz.generate.TextureModel` (see `gantlitz.generate.load`)."""
    from .generate import load as _load

    return _load(path, device=device, precision=precision, compile=compile, **kwargs)
