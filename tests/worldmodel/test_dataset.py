"""Recording and the dataset contract: round trip, worker-independence, and clear errors on bad
files.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from worldmodel.dataset import DatasetError, check, expected_layout, load_episode, read_meta
from worldmodel.record import RecordConfig, record, rollout

CLI = [sys.executable, "-m", "worldmodel.cli"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "balls"
    record(RecordConfig(world="balls", episodes=3, steps=20, seed=5), out, progress=False)
    return out


def test_a_recording_round_trips_through_the_contract(recorded):
    meta = read_meta(recorded)
    assert meta["world"] == "balls" and len(meta["episodes"]) == 3
    assert meta["audio"] == {"sample_rate": 16000, "samples_per_step": 800}
    for entry in meta["episodes"]:
        ep = load_episode(recorded, entry, meta, verify=True)
        for key, (_, shape) in expected_layout(meta, entry["length"]).items():
            assert ep[key].shape == shape
    # The file holds exactly what a fresh rollout with the episode's seed gives.
    import sims

    world = sims.make("balls", max_steps=20)
    again = rollout(world, "random", meta["episodes"][1]["seed"], 20)
    ep = load_episode(recorded, meta["episodes"][1], meta)
    for key in again:
        np.testing.assert_array_equal(ep[key], again[key])
    summary = check(recorded)
    assert summary["steps"] == 60 and summary["episodes"] == 3


def test_one_and_two_workers_write_identical_episodes(tmp_path):
    cfg = RecordConfig(world="reacher", episodes=3, steps=8, seed=11)
    record(cfg, tmp_path / "one", progress=False)
    record(RecordConfig(**{**cfg.__dict__, "workers": 2}), tmp_path / "two", progress=False)
    for name in ("000000", "000001", "000002"):
        a = (tmp_path / "one" / "episodes" / f"{name}.npz").read_bytes()
        b = (tmp_path / "two" / "episodes" / f"{name}.npz").read_bytes()
        assert a == b, name
    assert read_meta(tmp_path / "one")["episodes"] == read_meta(tmp_path / "two")["episodes"]


def test_recording_never_overwrites_a_dataset(recorded):
    before = (recorded / "dataset.json").read_bytes()
    with pytest.raises(DatasetError, match="already exists"):
        record(RecordConfig(world="balls", episodes=1, steps=2), recorded, progress=False)
    assert (recorded / "dataset.json").read_bytes() == before


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_data_check_names_a_truncated_episode_file(recorded, tmp_path):
    data = _copy(recorded, tmp_path / "d")
    victim = data / "episodes" / "000001.npz"
    victim.write_bytes(victim.read_bytes()[:500])
    result = subprocess.run([*CLI, "data", "check", str(data)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "000001.npz" in result.stderr and "checksum" in result.stderr


def test_data_check_names_the_field_of_a_consistent_but_wrong_episode(recorded, tmp_path):
    data = _copy(recorded, tmp_path / "d")
    meta = json.loads((data / "dataset.json").read_text())
    path = data / "episodes" / "000002.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["audio"] = arrays["audio"].astype(np.float64)
    from worldmodel.dataset import write_episode

    meta["episodes"][2] = {**meta["episodes"][2], **write_episode(data, "000002", arrays)}
    (data / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(
        DatasetError, match=r"000002\.npz: field 'audio' has dtype float64; expected float32"
    ):
        check(data)
    arrays["audio"] = arrays["audio"].astype(np.float32)
    arrays["proprio"][3, 1] = np.nan
    meta["episodes"][2] = {**meta["episodes"][2], **write_episode(data, "000002", arrays)}
    (data / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(
        DatasetError, match=r"000002\.npz: field 'proprio' has a non-finite value at"
    ):
        check(data)


def test_episode_files_hold_no_pickles(recorded):
    with zipfile.ZipFile(recorded / "episodes" / "000000.npz") as zf:
        for name in zf.namelist():
            with zf.open(name) as f:
                major, _ = np.lib.format.read_magic(f)
                read_header = getattr(np.lib.format, f"read_array_header_{major}_0")
                _, _, dtype = read_header(f)
                assert not dtype.hasobject, name


def test_a_missing_dataset_json_field_is_named(recorded, tmp_path):
    data = _copy(recorded, tmp_path / "d")
    meta = json.loads((data / "dataset.json").read_text())
    del meta["frame_shape"]
    (data / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"dataset.json: missing field 'frame_shape'"):
        read_meta(data)


def test_the_cli_records_checks_and_lists_worlds(tmp_path):
    out = tmp_path / "cp"
    rec = subprocess.run(
        [
            *CLI,
            "record",
            "--world",
            "cartpole",
            "--episodes",
            "2",
            "--steps",
            "10",
            "--policy",
            "scripted",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert rec.returncode == 0, rec.stderr
    chk = subprocess.run(
        [*CLI, "data", "check", str(out), "--json"], capture_output=True, text=True
    )
    assert chk.returncode == 0, chk.stderr
    summary = json.loads(chk.stdout.strip().splitlines()[-1])
    assert summary["world"] == "cartpole" and summary["episodes"] == 2
    worlds = subprocess.run([*CLI, "worlds"], capture_output=True, text=True)
    assert worlds.returncode == 0
    for name in ("balls", "reacher", "cartpole", "push_x", "a: push_x -"):
        assert name in worlds.stdout
    bad = subprocess.run(
        [*CLI, "record", "--mjcf", str(tmp_path / "nope.xml"), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "nope.xml: no such MJCF file" in bad.stderr


def test_training_windows_keep_the_reward_spread_for_the_reward_loss(recorded):
    from worldmodel.data import Windows

    windows = Windows(recorded, 5)
    rewards = np.concatenate([ep["reward"] for ep in windows.episodes]).astype(np.float64)
    assert windows.norm.reward_std == pytest.approx(max(rewards.std(), 1e-3), rel=1e-6)
