"""`gantlitz demo --quick`: synth → prepare → train tiny → generate, end to end, from the CLI."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gantlitz.cli import main


pytestmark = pytest.mark.usefixtures("one_thread")


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    for stage in ("[1/4] synth", "[2/4] prepare", "[3/4] train", "[4/4] generate", "tensorboard --logdir"):
        assert stage in result.output
    assert (out / "run" / "model.safetensors").exists()
    assert (out / "samples" / "contact.png").exists()
    for seed in (0, 1):
        for name in ("albedo", "specular", "displacement", "normal", "contact"):
            assert (out / "samples" / f"seed{seed:04d}" / f"{name}.png").exists()
    summary = (out / "SUMMARY.md").read_text()
    assert "contact.png" in summary and "tensorboard" in summary
    # A second run reuses the synthetic data and the prepared store, and trains again.
    again = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--device", "cpu"])
    assert again.exit_code == 0, again.output
    assert "synth: reusing" in again.output and "prepare: reusing" in again.output
