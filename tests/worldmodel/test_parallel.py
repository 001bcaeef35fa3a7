"""Data-parallel and multi-host training agree with a single device and a single process.

Each run trains a micro model for a few steps of one stage (the stages do not change how a batch
is split; each would add a compile of 20 s on a 2-core CPU)."""

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
    "stages=[0,0]",
    "data_shards=2",
    "log_every=1",
    "ckpt_every=100",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("par") / "balls"
    record(RecordConfig(world="balls", episodes=4, steps=10, seed=0), out, progress=False)
    return out


STEPS = 3


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


def run(cmd, **extra_env):
    done = subprocess.run(cmd, env=env(**extra_env), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr


def assert_same_losses(a, b):
    assert len(a) == len(b) == STEPS
    assert max(abs(x - y) / max(abs(y), 1.0) for x, y in zip(a, b, strict=True)) < 1e-6, (a, b)


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    """The losses of one process on one device."""
    out = tmp_path_factory.mktemp("single")
    run(train_cmd(data, out, STEPS))
    return losses(out)


@pytest.mark.heavy
def test_four_devices_give_the_losses_of_one(data, single, tmp_path):
    run(train_cmd(data, tmp_path, STEPS), XLA_FLAGS="--xla_force_host_platform_device_count=4")
    assert_same_losses(losses(tmp_path), single)


@pytest.mark.heavy
def test_two_processes_agree_with_each_other_and_with_one(data, single, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            train_cmd(
                data,
                tmp_path,
                STEPS,
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
    assert_same_losses(losses(tmp_path), single)
