"""Training and generation load no image-file, OpenGL or mesh library (GPU machines may lack them)."""

from __future__ import annotations

import subprocess
import sys


def test_training_and_generation_do_not_load_heavy_io_libraries():
    code = (
        "import sys, gantlitz.train.loop, gantlitz.generate, gantlitz.data;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('OpenImageIO', 'moderngl', 'trimesh')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
