"""`gantlitz studio`: explore a trained model in the browser (seeds, deep zoom, interpolation, noise, lit head,
downloads). A Starlette app over one `TextureModel`; see docs/studio.md."""

from .app import Limits, create_app
from .server import StudioError, open_model, running, serve

__all__ = ["Limits", "create_app", "StudioError", "open_model", "running", "serve"]
