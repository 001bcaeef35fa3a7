"""Every shipped checkpoint loads (names, shapes, dtypes checked), still matches the code, and
beats the plain baselines on freshly recorded held-out episodes of its world; the README's metrics
table is the one its cards give."""

import json
import shlex
from pathlib import Path

import numpy as np
import pytest

from worldmodel.checkpoint import cards_table, load
from worldmodel.eval import EvalConfig, evaluate
from worldmodel.record import RecordConfig, record

ROOT = Path(__file__).resolve().parents[1]
WORLDS = ("balls", "reacher", "cartpole")


def _policy(card: dict) -> str:
    argv = shlex.split(card["record_command"])
    return argv[argv.index("--policy") + 1]


@pytest.mark.parametrize("world", WORLDS)
def test_a_shipped_checkpoint_beats_the_baselines_on_fresh_episodes(world, tmp_path):
    folder = ROOT / "checkpoints" / world
    card = json.loads((folder / "card.json").read_text())
    assert (folder / "model.safetensors").stat().st_size <= 10e6
    assert card["world"] == world and card["eval"] and card["train_command"]
    loaded = load(folder)
    policy = _policy(card)
    for name, seed, episodes in (("probe", 7001, 8), ("held", 7002, 6)):
        record(
            RecordConfig(world=world, episodes=episodes, steps=40, policy=policy, seed=seed),
            tmp_path / name,
            progress=False,
        )
    m = evaluate(
        loaded,
        tmp_path / "held",
        tmp_path / "report",
        EvalConfig(context=4, horizon=8, probe_samples=600),
        train_data=str(tmp_path / "probe"),
    )
    model, base = m["model"], m["baselines"]
    # Frames: a step ahead better than the mean frame's blur; eight steps ahead better than
    # copying the last frame.
    assert model["frame_psnr"][0] > base["mean_frame"]["frame_psnr"][0], m
    assert model["frame_psnr"][-1] > base["copy_last"]["frame_psnr"][-1], m
    # Sound: closer than silence; captions: events named far better than saying nothing.
    assert np.mean(model["audio_logmel_l1"]) < np.mean(base["silence"]["audio_logmel_l1"]), m
    assert np.mean(model["caption_event_f1"]) > 0.3 + np.mean(
        base["empty_caption"]["caption_event_f1"]
    ), m


def test_the_readme_table_is_the_cards_table():
    table = cards_table(ROOT / "checkpoints")
    assert len(table.splitlines()) == 2 + len(WORLDS)
    assert table in (ROOT / "README.md").read_text()
