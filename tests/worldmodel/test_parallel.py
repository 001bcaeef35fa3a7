"""Data-parallel and multi-host training agree with a single device and a single process."""

import json
import os
import socket
import subprocess
import sys

import pytest

from worldmodel.record import RecordConfig, record

SETS = [
    "width=32",
    "depth=1",
    "heads=2",
    "stem=[8,16,16]",
    "latent_dim=32",
    "hidden_dim=32",
    "decoder_channels=[16,8,8]",
    "batch=4",
    "context=2",
    "horizon=3",
    "stages=[0.2,0.4]",
    "data_shards=2",
    "log_every=1",
    "ckpt_every=100",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("par") / "balls"
    record(RecordConfig(world="balls", episodes=4, steps=10, seed=0), out, progress=False)
    return out


def train_cmd(data, out, steps, *extra):
    cmd = [
        sys.executable,
        "-m",
        "worldmodel.cli",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--steps",
        str(steps),
    ]
    for s in SETS:
        cmd += ["--set", s]
    return cmd + list(extra)


def losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def env(**extra):
    e = {**os.environ, "JAX_PLATFORMS": "cpu", **extra}
    e.pop("XLA_FLAGS", None)
    e.update(extra)
    return e


def test_four_devices_give_the_losses_of_one(data, tmp_path):
    one = subprocess.run(
        train_cmd(data, tmp_path / "one", 5), env=env(), capture_output=True, text=True, timeout=900
    )
    assert one.returncode == 0, one.stderr
    four = subprocess.run(
        train_cmd(data, tmp_path / "four", 5),
        env=env(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert four.returncode == 0, four.stderr
    a, b = losses(tmp_path / "one"), losses(tmp_path / "four")
    assert len(a) == len(b) == 5
    assert max(abs(x - y) / max(abs(y), 1.0) for x, y in zip(a, b, strict=True)) < 1e-6, (a, b)


def test_two_processes_agree_with_each_other_and_with_one(data, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            train_cmd(
                data,
                tmp_path / "multi",
                3,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ),
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    last = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert abs(last[0]["loss"] - last[1]["loss"]) < 1e-6, last
    single = subprocess.run(
        train_cmd(data, tmp_path / "single", 3),
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert single.returncode == 0, single.stderr
    a, b = losses(tmp_path / "multi"), losses(tmp_path / "single")
    assert len(a) == len(b) == 3
    assert max(abs(x - y) / max(abs(y), 1.0) for x, y in zip(a, b, strict=True)) < 1e-6, (a, b)
