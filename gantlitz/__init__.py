"""GANtlitz: a patch-based StyleGAN2 for seamless ultra-high-resolution multi-modal face textures."""

__version__ = "0.1.0"
