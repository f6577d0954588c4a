"""`benchmarks/gpu_acceptance.py --quick --device cpu`: the GPU acceptance command runs end to end on a CPU
and writes its report, so it works the day a GPU is there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_acceptance_quick_run_writes_a_complete_report(tmp_path):
    out = tmp_path / "acceptance"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "benchmarks/gpu_acceptance.py", "--quick", "--device", "cpu", "--threads", "1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    sections = report["sections"]
    assert list(sections) == ["gpu tests", "training", "generator forward", "full texture", "learning check"]
    assert all(entry["status"] == "ok" for entry in sections.values()), sections
    rows = sections["training"]["result"]
    assert len(rows) == 3 and all(r["modality_patches_per_s"] > 0 and r["peak_gb"] > 0 for r in rows)
    assert sections["full texture"]["result"][0]["evals"] == 16 * 3  # 4x4 tiny patches, three modalities
    learning = sections["learning check"]["result"]
    assert learning["steps"] == 4
    for label in ("untrained", "trained"):
        assert set(learning[f"layout_{label}"]) == {"albedo", "specular", "displacement"}
        assert learning[f"patch_kid_{label}"]["mean"] > learning["patch_kid_real_vs_real"]["mean"]
    text = (out / "report.md").read_text()
    assert "## learning check — ok" in text and "| tiny | 4 | bf16 | no |" in text
