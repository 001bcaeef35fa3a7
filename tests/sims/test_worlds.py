"""The World API over every bundled world and a user's MJCF: shapes, determinism, sound, text."""

from pathlib import Path

import mujoco
import numpy as np
import pytest

import sims
from sims.captions import MAX_TOKENS
from sims.policies import make_policy
from sims.sound import energy_db

ASSETS = Path(__file__).parents[1] / "assets"


def make_world(name: str, **options) -> sims.World:
    if name == "two_hinges":
        return sims.make(mjcf=ASSETS / "two_hinges.xml", **options)
    return sims.make(name, **options)


@pytest.mark.parametrize("name", [*sims.WORLDS, "two_hinges"])
def test_every_world_gives_the_observation_contract(name):
    world = make_world(name, size=48)
    obs, info = world.reset(0)
    spec = world.action_spec
    for _ in range(3):
        obs, reward, terminated, truncated, info = world.step(
            (spec.low + spec.high) / 2 + 0.5 * spec.high
        )
    assert obs["frame"].shape == (48, 48, 3) and obs["frame"].dtype == np.uint8
    assert obs["audio"].shape == (800,) and obs["audio"].dtype == np.float32
    assert np.all(np.abs(obs["audio"]) <= 1.0)
    assert isinstance(obs["caption"], str)
    assert obs["caption_tokens"].shape == (MAX_TOKENS,) and obs["caption_tokens"].dtype == np.int32
    assert world.vocab.decode(obs["caption_tokens"]) == obs["caption"]
    assert (
        obs["proprio"].shape == (len(world.proprio_names),) and obs["proprio"].dtype == np.float32
    )
    assert obs["state"].shape == (len(world.state_names),) and obs["state"].dtype == np.float32
    assert (
        isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
    )
    assert isinstance(info["events"], list)
    assert len(spec.names) == world.model.nu and np.all(spec.low < spec.high)


@pytest.mark.parametrize("name", list(sims.WORLDS))
def test_the_same_seed_gives_the_same_episode(name):
    def run():
        world = make_world(name)
        world.reset(7)
        policy = make_policy("random", world, np.random.default_rng(3))
        out = [world.step(policy(t))[0] for t in range(15)]
        return out

    a, b = run(), run()
    for oa, ob in zip(a, b, strict=True):
        for key in ("frame", "audio", "caption_tokens", "proprio", "state"):
            np.testing.assert_array_equal(oa[key], ob[key])


@pytest.mark.parametrize("name", list(sims.WORLDS))
def test_frames_change_when_bodies_move(name):
    world = make_world(name)
    first, _ = world.reset(1)
    policy = make_policy("scripted", world, np.random.default_rng(1))
    for t in range(10):
        obs = world.step(policy(t))[0]
    assert not np.array_equal(first["state"], obs["state"])
    assert np.abs(first["frame"].astype(int) - obs["frame"].astype(int)).sum() > 100


def _balls_aimed_at(target: str, speed: float = 1.5, noise_floor: float = 0.0) -> sims.World:
    """A balls world at rest but for the red ball rolling right at `target`."""
    world = sims.make("balls", noise_floor=noise_floor)
    world.initial_speed = 0.0
    world.reset(0)
    m, d = world.model, world.data
    place = {"red_ball": (-0.2, 0.0), "green_ball": (0.5, 0.0), "blue_ball": (-0.6, 0.7)}
    if target == "east_wall":
        place["red_ball"], place["green_ball"] = (0.3, 0.0), (0.0, -0.7)
    for name, (x, y) in place.items():
        b = m.body(name).id
        d.qpos[m.joint(name.replace("ball", "x")).qposadr[0]] = x - m.body_pos[b, 0]
        d.qpos[m.joint(name.replace("ball", "y")).qposadr[0]] = y - m.body_pos[b, 1]
    d.qvel[:] = 0.0
    d.qvel[m.joint("red_x").dofadr[0]] = speed
    mujoco.mj_forward(m, d)
    return world


def test_a_still_world_is_silent_and_says_nothing():
    world = sims.make("balls")
    world.initial_speed = 0.0
    world.reset(0)
    for _ in range(10):
        obs = world.step(np.zeros(2))[0]
        assert not obs["audio"].any(), "exact zeros when nothing moves"
        assert obs["caption"] == ""


def test_a_collision_sounds_inside_its_step_well_above_the_floor():
    floor_world = _balls_aimed_at("east_wall", speed=0.0, noise_floor=1e-3)
    floor_db = np.mean([energy_db(floor_world.step(np.zeros(2))[0]["audio"]) for _ in range(5)])
    world = _balls_aimed_at("east_wall", noise_floor=1e-3)
    for _ in range(40):
        obs, _, _, _, info = world.step(np.zeros(2))
        hits = [e for e in info["events"] if e["type"] == "impact" and "east wall" in e["text"]]
        if hits:
            break
    else:
        pytest.fail("the red ball never hit the east wall")
    sub = world.samples_per_step // world.n_substeps
    start = hits[0]["substep"] * sub
    onset = int(np.argmax(np.abs(obs["audio"]) > 0.02))
    assert start <= onset < start + sub, (start, onset)
    assert energy_db(obs["audio"][start:]) >= floor_db + 20.0


def test_captions_name_the_bodies_of_a_collision():
    world = _balls_aimed_at("green_ball")
    captions = [world.step(np.zeros(2))[0]["caption"] for _ in range(20)]
    assert any(c.startswith("the red ball hits the green ball") for c in captions), captions
    wall = _balls_aimed_at("east_wall")
    captions = [wall.step(np.zeros(2))[0]["caption"] for _ in range(30)]
    assert any(c.startswith("the red ball hits the east wall") for c in captions), captions
    assert any(c == "the red ball moves right quickly" for c in captions), captions


def test_the_reacher_reaching_its_target_is_an_event_with_a_sound():
    world = sims.make("reacher")
    world.reset(0)
    d = world.data
    tip = d.body("fingertip").xpos[:2].copy()
    c, s = np.cos(0.3), np.sin(0.3)
    d.mocap_pos[0, :2] = (c * tip[0] - s * tip[1], s * tip[0] + c * tip[1])  # ahead of the swing
    d.qvel[0] = 2.0
    mujoco.mj_forward(world.model, d)
    for _ in range(10):
        obs, reward, _, _, info = world.step(np.zeros(2))
        if "the fingertip reaches the target" in obs["caption"]:
            break
    else:
        pytest.fail("the fingertip never reached the target")
    assert any(e["type"] == "reach" for e in info["events"])
    assert reward > -0.05
    assert energy_db(obs["audio"]) > -40.0


@pytest.mark.parametrize("side,sign", [("left", -1.0), ("right", 1.0)])
def test_the_pole_falls_to_the_side_it_leans(side, sign):
    world = sims.make("cartpole")
    world.reset(0)
    world.data.qpos[1] = sign * 0.5
    world.data.qvel[1] = sign * 1.0
    for _ in range(20):
        obs, _, terminated, _, _ = world.step(np.zeros(1))
        if terminated:
            break
    assert terminated
    assert obs["caption"].startswith(f"the pole falls to the {side}")
    assert energy_db(obs["audio"]) > -45.0, "falling against the stop knocks"


def test_the_cart_hits_the_end_of_its_rail():
    world = sims.make("cartpole")
    world.reset(0)
    world.data.qpos[:] = (1.2, 0.0)
    world.data.qvel[:] = (2.0, 0.0)
    captions = [world.step(np.zeros(1))[0]["caption"] for _ in range(5)]
    assert any("the cart hits the right end" in c for c in captions), captions


def test_a_user_mjcf_becomes_a_world_with_generic_keys_sound_and_captions():
    world = make_world("two_hinges")
    assert world.action_spec.names == ("left_motor", "right_motor")
    np.testing.assert_allclose(world.action_spec.low, [-2, -3])
    np.testing.assert_allclose(world.action_from_keys({"q", "s"}), [2.0, -3.0])
    world.reset(0)
    captions, loud = [], 0
    for t in range(40):
        obs, *_ = world.step(np.array([-2.0, 3.0]) if t < 20 else np.zeros(2))  # swing inwards
        captions.append(obs["caption"])
        loud += energy_db(obs["audio"]) > -60
    assert any("paddle moves" in c for c in captions), captions
    assert any("hits the bumper" in c for c in captions), captions
    assert loud > 10


def test_a_bad_mjcf_names_the_file_and_mujocos_message(tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<mujoco><worldbody><geom type='sphere' size='-1'/></worldbody>")
    with pytest.raises(sims.WorldError, match=r"broken\.xml: MuJoCo could not load this MJCF: .+"):
        sims.make(mjcf=bad)
    with pytest.raises(sims.WorldError, match=r"missing\.xml: no such MJCF file"):
        sims.make(mjcf=tmp_path / "missing.xml")


def test_a_model_without_actuators_is_refused(tmp_path):
    path = tmp_path / "passive.xml"
    path.write_text(
        "<mujoco><worldbody><body><freejoint/><geom size='.1'/></body></worldbody></mujoco>"
    )
    with pytest.raises(sims.WorldError, match=r"passive\.xml: the model has no actuators"):
        sims.make(mjcf=path)


def test_a_wrong_action_is_refused_with_its_names():
    world = sims.make("balls")
    world.reset(0)
    with pytest.raises(ValueError, match="push_x, push_y"):
        world.step(np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        world.step(np.array([np.nan, 0.0]))


def test_physics_can_be_saved_and_restored_for_oracle_planning():
    world = sims.make("balls")
    world.reset(3)
    saved = world.get_physics()
    first = [world.step(np.array([1.0, 0.5]))[0]["state"] for _ in range(5)]
    world.set_physics(saved)
    again = [world.step(np.array([1.0, 0.5]))[0]["state"] for _ in range(5)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_the_scripted_reacher_reaches_but_its_actions_are_not_read_off_the_frame():
    # Pure reaching makes the action a function of the picture, and a model trained on it learns
    # to ignore actions; the scripted policy mixes in exploring segments.
    world = sims.make("reacher")
    m, d = world.model, world.data
    tip, jac = m.body("fingertip").id, np.zeros((3, m.nv))
    cosines, reached = [], []
    for ep in range(6):
        world.reset(ep)
        policy = make_policy("scripted", world, np.random.default_rng(ep))
        hit = False
        for t in range(100):
            a = policy(t)
            mujoco.mj_jacBody(m, d, jac, None, tip)
            toward = jac[:2].T @ (d.mocap_pos[0, :2] - d.xpos[tip, :2])
            cosines.append(a @ toward / (np.linalg.norm(a) * np.linalg.norm(toward) + 1e-9))
            world.step(a)
            hit |= world.distance() < 0.05
        reached.append(hit)
    world.close()
    assert np.mean(reached) >= 0.5, reached
    assert 0.05 < np.mean(cosines) < 0.33, np.mean(cosines)  # reaching alone gave 0.43
