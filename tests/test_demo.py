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
    for stage in ("[1/5] synth", "[2/5] prepare", "[3/5] train", "[4/5] generate", "[5/5] measure",
                  "tensorboard --logdir"):
        assert stage in result.output
    assert (out / "run" / "model.safetensors").exists()
    assert (out / "samples" / "contact.png").exists()
    for seed in (0, 1):
        for name in ("albedo", "specular", "displacement", "normal", "contact"):
            assert (out / "samples" / f"seed{seed:04d}" / f"{name}.png").exists()
    summary = (out / "SUMMARY.md").read_text()
    assert "all stages reused" not in summary
    assert "contact.png" in summary and "tensorboard" in summary and "| displacement |" in summary
    for name in ("layout.png", "layout.json", "kid_whole.png", "spectra.png"):
        assert (out / "eval" / name).exists()
    # A second run reuses every stage: nothing is retrained, regenerated or deleted.
    model = out / "run" / "model.safetensors"
    before = (model.read_bytes(), model.stat().st_mtime_ns, (out / "samples" / "contact.png").stat().st_mtime_ns)
    again = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--device", "cpu"])
    assert again.exit_code == 0, again.output
    for stage in ("synth", "prepare", "train", "generate", "measure"):
        assert f"{stage}: reusing" in again.output, stage
    assert before == (model.read_bytes(), model.stat().st_mtime_ns,
                      (out / "samples" / "contact.png").stat().st_mtime_ns)
    assert "all stages reused" in (out / "SUMMARY.md").read_text()


def test_demo_overwrite_trains_again(tmp_path):
    out = tmp_path / "demo"
    first = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--device", "cpu"])
    assert first.exit_code == 0, first.output
    written = (out / "run" / "model.safetensors").stat().st_mtime_ns  # the demo's own file: --overwrite replaces it
    again = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--device", "cpu", "--overwrite"])
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert "train: reusing" not in again.output
    assert (out / "run" / "model.safetensors").stat().st_mtime_ns != written


def test_demo_refuses_impossible_values_before_writing(tmp_path):
    out = tmp_path / "demo"
    for args in (["--minutes", "0"], ["--seeds", "3"]):
        result = CliRunner().invoke(main, ["demo", "--out", str(out), *args])
        assert result.exit_code == 2, result.output
        assert "minutes > 0" in result.output or "--seeds" in result.output
        assert not out.exists()
