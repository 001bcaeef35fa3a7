"""Policies for recording: smooth random (Ornstein-Uhlenbeck) and a scripted one per world.

A policy is built for one episode from the world and a seeded generator, then called once per step
with the step index; scripted policies may read the world's true state (they stand in for a skilled
player).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sims.world import World

Policy = Callable[[int], np.ndarray]


def random_policy(
    world: World, rng: np.random.Generator, theta: float = 0.15, sigma: float = 0.35
) -> Policy:
    """Ornstein-Uhlenbeck noise in [-1, 1] mapped to the action bounds: smooth, wandering pushes."""
    spec = world.action_spec
    x = rng.uniform(-0.5, 0.5, size=spec.shape)

    def act(t: int) -> np.ndarray:
        nonlocal x
        x = np.clip(x - theta * x + sigma * rng.standard_normal(spec.shape), -1.0, 1.0)
        return spec.scale(x).astype(np.float32)

    return act


def _balls(world: World, rng: np.random.Generator) -> Policy:
    """Drive the red ball at another ball (or a wall), switching aim every so often: collisions."""
    d = world.data
    targets = ["green_ball", "blue_ball", "wall"]
    state = {"aim": rng.choice(targets), "until": 0, "wall": rng.uniform(-1, 1, 2)}

    def act(t: int) -> np.ndarray:
        if t >= state["until"]:
            state["aim"] = targets[rng.integers(len(targets))]
            state["until"] = t + int(rng.integers(15, 40))
            state["wall"] = rng.uniform(-1, 1, 2) * 1.5
        red = d.body("red_ball").xpos[:2]
        goal = state["wall"] if state["aim"] == "wall" else d.body(state["aim"]).xpos[:2]
        delta = goal - red
        push = delta / max(np.linalg.norm(delta), 1e-6) - 0.3 * d.body("red_ball").cvel[3:5]
        return np.clip(push + 0.2 * rng.standard_normal(2), -1, 1).astype(np.float32)

    return act


def _reacher(world: World, rng: np.random.Generator) -> Policy:
    """Segments of reaching (Jacobian transpose toward the target, random gain, noise) and of
    smooth random exploration, and a wander after each reach. Pure reaching makes the action a
    function of what the frame shows, and a model trained on it learned to predict the arm's
    motion without reading the action (its imagined reward barely moved with the action: 0.1
    correlation across nine constant actions); the exploring segments break that link."""
    import mujoco

    m, d = world.model, world.data
    tip = m.body("fingertip").id
    jac = np.zeros((3, m.nv))
    explore = random_policy(world, rng, theta=0.15, sigma=0.5)
    state = {"until": 0, "mode": "reach", "gain": 40.0, "wander": 0}

    def act(t: int) -> np.ndarray:
        err = d.mocap_pos[0, :2] - d.xpos[tip, :2]
        if t >= state["until"]:
            state["mode"] = "explore" if rng.random() < 0.5 else "reach"
            state["until"] = t + int(rng.integers(8, 25))
            state["gain"] = rng.uniform(10.0, 40.0)
        if np.linalg.norm(err) < 0.04 and state["wander"] <= t:
            state["wander"] = t + int(rng.integers(10, 25))
        if state["mode"] == "explore" or state["wander"] > t:
            return explore(t)
        mujoco.mj_jacBody(m, d, jac, None, tip)
        torque = state["gain"] * jac[:2].T @ err - 0.15 * d.qvel[:2]
        return np.clip(torque + 0.3 * rng.standard_normal(2), -1, 1).astype(np.float32)

    return act


def _cartpole(world: World, rng: np.random.Generator) -> Policy:
    """Balance the pole (a PD law on angle and cart position) with noise, and now and then shove
    the cart for a few steps: long episodes of swinging, clanging and recovering, and some falls."""
    m, d = world.model, world.data
    hinge, slider = m.joint("hinge"), m.joint("slider")
    sigma = rng.uniform(0.2, 0.8)
    state = {"shove_until": -1, "shove": 0.0}

    def act(t: int) -> np.ndarray:
        if t > state["shove_until"] and rng.random() < 0.012:
            state["shove_until"] = t + int(rng.integers(2, 7))
            state["shove"] = rng.choice([-1.0, 1.0])
        if t <= state["shove_until"]:
            return np.array([state["shove"]], dtype=np.float32)
        th, dth = d.qpos[hinge.qposadr[0]], d.qvel[hinge.dofadr[0]]
        x, dx = d.qpos[slider.qposadr[0]], d.qvel[slider.dofadr[0]]
        u = 10.0 * th + 2.0 * dth + 0.5 * x + 1.0 * dx + sigma * rng.standard_normal()
        return np.array([np.clip(u, -1.0, 1.0)], dtype=np.float32)

    return act


SCRIPTED: dict[str, Callable[[World, np.random.Generator], Policy]] = {
    "balls": _balls,
    "reacher": _reacher,
    "cartpole": _cartpole,
}


def make_policy(kind: str, world: World, rng: np.random.Generator) -> Policy:
    """`random` for any world; `scripted` for the bundled ones."""
    if kind == "random":
        return random_policy(world, rng)
    if kind == "scripted":
        if world.name not in SCRIPTED:
            raise ValueError(f"no scripted policy for world {world.name!r}; use --policy random")
        return SCRIPTED[world.name](world, rng)
    raise ValueError(f"unknown policy {kind!r}; expected random or scripted")
