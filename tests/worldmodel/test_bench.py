"""`worldmodel bench --quick` runs end to end and writes every documented key (no speed asserts)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.heavy
def test_quick_bench_writes_the_documented_keys(tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "worldmodel.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    b = json.loads(out.read_text())
    assert set(b) == {
        "machine",
        "imagine_vs_sim",
        "train",
        "viewer_frame_ms",
        "plans_per_s",
        "record",
    }
    assert set(b["machine"]) == {"device", "device_count", "jax"}
    assert set(b["imagine_vs_sim"]) == {"batch_1", "batch_64", "batch_256", "latent_only_1024"}
    for v in b["imagine_vs_sim"].values():
        assert set(v) == {"imagined_per_s", "sim_per_s", "ratio"} and v["imagined_per_s"] > 0
    assert set(b["train"]) == {"ms_per_step", "flops_per_s", "peak_flops_per_s", "mfu"}
    assert 0 < b["train"]["mfu"] < 1.5
    assert set(b["viewer_frame_ms"]) == {"median", "p99"}
    assert b["plans_per_s"] > 0
    assert set(b["record"]) == {"workers_1", "workers_2"}
    for v in b["record"].values():
        assert set(v) == {"steps_per_s", "sim_render_per_s", "ratio"}
    assert "viewer frame" in result.stdout
