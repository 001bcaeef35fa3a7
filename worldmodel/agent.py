"""Planning episodes: the same MPPI/CEM planner acting through the world model, on the true MuJoCo
simulator (the oracle), and a random-action baseline, scored on the world's task.

The world-model planner runs every episode in lockstep: one batched encode and one `vmap`-ed plan
per control step. The oracle runs the identical `plan.optimise` with its cost computed by
`mujoco.rollout` from the exact physics state (through `jax.pure_callback`), so the two differ
only in what imagines the futures.

Goals (`--goal`): `reward` (minus the predicted reward), `frame` (the latent of a goal frame that
shows the arm at the target) or `caption` (the caption-only latent of "the fingertip reaches the
target"). The task is reacher's: success is the fingertip within `REACH_RADIUS` of the target at
the episode's last step; the oracle always plans on the true distance.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import rollout

import sims
from sims.reacher import REACH_RADIUS
from worldmodel.checkpoint import Loaded
from worldmodel.imagine import Imaginer
from worldmodel.plan import PlanConfig, goal_cost, goal_weights, optimise, reward_cost, shift

GOALS = ("reward", "frame", "caption")
GOAL_CAPTION = "the fingertip reaches the target"
DISCOUNT = 0.98


@dataclass(frozen=True)
class PlanRun:
    """One `worldmodel plan` invocation."""

    world: str = "reacher"
    goal: str = "reward"
    episodes: int = 50
    steps: int = 50
    seed: int = 1000  # episode i starts from world seed `seed + i` (held out from recordings)
    oracle_episodes: int | None = None  # the oracle is slow; None = all episodes
    # Observed steps the model's memory is rebuilt from at each control step (as training grounds
    # its context); 0 keeps one memory over the whole episode.
    # Shipped reacher, reward goal, seeds 1000-1049: 0.64 with 0, 0.62 with 8.
    memory: int = 0
    plan: PlanConfig = field(default_factory=PlanConfig)


# --- the task -------------------------------------------------------------------------------------
def start_episode(world, seed: int, goal: str) -> np.ndarray | None:
    """Reset; for a frame goal, move the target under a random reachable arm pose and return the
    frame of that pose (the goal picture), with the arm restored to its start."""
    world.reset(seed)
    if goal != "frame":
        return None
    d, m = world.data, world.model
    rng = np.random.default_rng(seed + 7919)
    start = world.get_physics()
    qpos0 = d.qpos.copy()
    d.qpos[m.joint("shoulder").qposadr[0]] = rng.uniform(-np.pi, np.pi)
    d.qpos[m.joint("elbow").qposadr[0]] = rng.uniform(-2.0, 2.0)
    mujoco.mj_forward(m, d)
    d.mocap_pos[0, :2] = d.body("fingertip").xpos[:2]
    mujoco.mj_forward(m, d)
    picture = world.render()
    target = d.mocap_pos.copy()
    world.set_physics(start)
    d.qpos[:] = qpos0
    d.mocap_pos[:] = target
    mujoco.mj_forward(m, d)
    return picture


# --- the oracle: the same optimiser, futures from MuJoCo ------------------------------------
class Oracle:
    """MPPI/CEM on the true simulator: each candidate is a `mujoco.rollout` from the exact state."""

    def __init__(self, world, cfg: PlanConfig, threads: int = 2) -> None:
        self.world, self.cfg = world, cfg
        self.model = world.model
        self.datas = [mujoco.MjData(self.model) for _ in range(threads)]
        self.spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
        self._state = np.empty(mujoco.mj_stateSize(self.model, self.spec))
        sensor = self.model.sensor("fingertip_pos")
        self._adr = int(sensor.adr[0])
        self._target = np.zeros(2)

        def cost_np(actions: np.ndarray) -> np.ndarray:
            T = actions.shape[1]
            ctrl = world.action_spec.scale(np.asarray(actions, np.float64))
            ctrl = np.repeat(ctrl, world.n_substeps, axis=1)  # hold each action for a control step
            _, sensors = rollout.rollout(
                self.model, self.datas, self._state[None], ctrl, persistent_pool=True
            )
            tip = sensors[:, world.n_substeps - 1 :: world.n_substeps, self._adr : self._adr + 2]
            dist = np.linalg.norm(tip - self._target, axis=-1)  # [N, T]
            return (dist * DISCOUNT ** np.arange(T)).sum(-1).astype(np.float32)

        def plan(key, mean):
            def cost(actions):
                shape = jax.ShapeDtypeStruct(actions.shape[:1], jnp.float32)
                return jax.pure_callback(cost_np, shape, actions)

            return optimise(cost, key, mean, cfg)

        self._plan = jax.jit(plan)

    def __call__(self, key: jax.Array, mean: jax.Array):
        mujoco.mj_getState(self.model, self.world.data, self._state, self.spec)
        self._target = self.world.data.mocap_pos[0, :2].copy()
        return self._plan(key, mean)


# --- the world-model planner: every episode in one batched call -----------------------------------
def model_planner(loaded: Loaded, cfg: PlanConfig, goal: str):
    """A jitted (params, carry [E,...], mean [E,T,A], keys [E], goal_z [E,D]) -> (mean, cost,
    samples) that plans every episode at once."""
    g = loaded.graphdef
    weights = goal_weights(loaded.cfg, goal)

    def one(params, carry, mean, key, goal_z):
        carry = jax.tree.map(lambda x: x[None], carry)
        if goal == "reward":
            cost = reward_cost(g, params, carry, discount=DISCOUNT)
        else:
            cost = goal_cost(g, params, carry, goal_z, weights)
        return optimise(cost, key, mean, cfg)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0)))


def goal_latents(imaginer: Imaginer, goal: str, pictures: list, obs_like: dict) -> jax.Array:
    """Goal latents float[E, D]: encoded goal frames (frame only), or the goal caption alone."""
    E = len(pictures)
    if goal == "reward":
        return jnp.zeros((E, imaginer.cfg.z_dim))
    vocab = imaginer.vocab
    items = []
    for pic in pictures:
        o = dict(obs_like)
        if goal == "frame":
            o["frame"] = pic
        else:
            o["caption_tokens"] = vocab.encode(GOAL_CAPTION)
        items.append(o)
    present = np.zeros((E, 4), bool)
    present[:, 0 if goal == "frame" else 2] = True
    z, _ = imaginer.encode(items, present)
    return z


# --- episodes -------------------------------------------------------------------------------------
def _summary(final: list[float], plans: int = 0, seconds: float = 0.0) -> dict[str, float]:
    final_arr = np.asarray(final)
    out = {
        "success": float(np.mean(final_arr < REACH_RADIUS)),
        "final_distance": float(np.mean(final_arr)),
    }
    if plans:
        out["plans_per_s"] = plans / max(seconds, 1e-9)
    return out


def run_model(loaded: Loaded, run: PlanRun, frames_of: int | None = 0) -> tuple[dict, list]:
    """The world-model planner on `run.episodes` true episodes in lockstep; returns (summary, the
    frames of episode `frames_of` with the planner's best imagined frame)."""
    imaginer = Imaginer(loaded)
    cfg = run.plan
    E = run.episodes
    worlds = [sims.make(run.world) for _ in range(E)]
    pictures = [start_episode(w, run.seed + i, run.goal) for i, w in enumerate(worlds)]
    obs = [w.observe() for w in worlds]
    goal_z = goal_latents(imaginer, run.goal, pictures, obs[0])
    planner = model_planner(loaded, cfg, run.goal)
    A = loaded.cfg.action_dim
    mean = jnp.zeros((E, cfg.horizon, A))
    z, _ = imaginer.encode(obs)
    carry = imaginer.initial(z)
    seen, acts = [z], []  # the last `run.memory` latents and the model-scale actions between them
    key = jax.random.key(run.seed)
    shown, plans, seconds = [], 0, 0.0
    for t in range(run.steps):
        key, k = jax.random.split(key)
        t0 = time.perf_counter()
        mean, _, _ = planner(imaginer.params, carry, mean, jax.random.split(k, E), goal_z)
        first = np.asarray(mean[:, 0])
        if t:  # the first call compiles
            seconds += time.perf_counter() - t0
            plans += E
        actions = worlds[0].action_spec.scale(first)  # every episode is the same world
        if frames_of is not None:
            shown.append(worlds[frames_of].render())
        obs, before = [w.step(a)[0] for w, a in zip(worlds, actions, strict=True)], obs
        z, _ = imaginer.encode(obs, previous=before)
        if run.memory:
            seen, acts = [*seen, z][-run.memory :], [*acts, jnp.asarray(first)]
            acts = acts[len(acts) - len(seen) + 1 :]
            carry = (
                imaginer.recall(jnp.stack(seen, 1), jnp.stack(acts, 1))
                if acts
                else imaginer.initial(z)
            )
        else:
            carry = imaginer.ground(imaginer.step(carry, actions), z)
        mean = jax.vmap(shift)(mean)
    final = [w.distance() for w in worlds]
    for w in worlds:
        w.close()
    picture = pictures[frames_of] if frames_of is not None else None
    return _summary(final, plans, seconds), (shown, picture)


def run_oracle(run: PlanRun) -> dict:
    """The same planner and budget on the true simulator, one episode after another."""
    n = run.oracle_episodes or run.episodes
    world = sims.make(run.world)
    oracle = Oracle(world, run.plan)
    final, plans, seconds = [], 0, 0.0
    key = jax.random.key(run.seed)
    spec = world.action_spec
    for i in range(n):
        start_episode(world, run.seed + i, run.goal)
        mean = jnp.zeros((run.plan.horizon, spec.shape[0]))
        for t in range(run.steps):
            key, k = jax.random.split(key)
            t0 = time.perf_counter()
            mean, _, _ = oracle(k, mean)
            a = np.asarray(mean[0])
            if i or t:  # the first call compiles
                seconds += time.perf_counter() - t0
                plans += 1
            world.step(spec.scale(a))
            mean = shift(mean)
        final.append(world.distance())
    world.close()
    return _summary(final, plans, seconds)


def run_random(run: PlanRun) -> dict:
    """Uniform random actions on the same episodes."""
    world = sims.make(run.world)
    spec = world.action_spec
    rng = np.random.default_rng(run.seed)
    final = []
    for i in range(run.episodes):
        start_episode(world, run.seed + i, run.goal)
        for _ in range(run.steps):
            world.step(rng.uniform(spec.low, spec.high).astype(np.float32))
        final.append(world.distance())
    world.close()
    return _summary(final)


def plan_report(loaded: Loaded, run: PlanRun, out: str | None = None) -> dict[str, Any]:
    """Run all three, write `plan.json` and `plan.gif` under `out`, and return the report."""
    if run.world != "reacher":
        raise ValueError(
            f"plan: world {run.world!r} has no planning task yet; reacher does (reach the target)"
        )
    if run.goal not in GOALS:
        raise ValueError(f"plan: goal {run.goal!r}; expected one of {', '.join(GOALS)}")
    if loaded.config.get("world") != run.world:
        raise ValueError(
            f"plan: the checkpoint is for world {loaded.config.get('world')!r}, not {run.world!r}"
        )
    model, (shown, picture) = run_model(loaded, run)
    report = {
        "world": run.world,
        "goal": run.goal,
        "episodes": run.episodes,
        "steps": run.steps,
        "world_model": model,
        "oracle": run_oracle(run),
        "random": run_random(run),
    }
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plan.json").write_text(json.dumps(report, indent=1) + "\n")
        write_gif(folder / "plan.gif", shown, run.goal, picture)
    return report


def write_gif(path: Path, frames: list[np.ndarray], goal: str, picture: np.ndarray | None) -> None:
    """The planned episode at 4x, beside its goal: the goal frame, or the goal in words."""
    import imageio.v3 as iio

    from worldmodel.plots import text_panel

    H = frames[0].shape[0] * 4
    if picture is not None:
        side = np.kron(picture, np.ones((4, 4, 1), np.uint8))
    else:
        words = GOAL_CAPTION if goal == "caption" else "reward: minus the fingertip's distance"
        side = text_panel(["goal", words], H, H)
    big = [np.concatenate([np.kron(f, np.ones((4, 4, 1), np.uint8)), side], 1) for f in frames]
    iio.imwrite(path, np.stack(big), duration=50, loop=0)


def table(report: dict[str, Any]) -> str:
    rows = [f"{'who':<12} {'success':>8} {'final dist':>11} {'plans/s':>9}"]
    for who in ("world_model", "oracle", "random"):
        r = report[who]
        pps = f"{r['plans_per_s']:9.1f}" if "plans_per_s" in r else f"{'-':>9}"
        rows.append(f"{who:<12} {r['success']:8.2f} {r['final_distance']:11.3f} {pps}")
    return "\n".join(rows)
