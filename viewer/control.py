"""Planner control for the window (`M`) and goals (`G`): MPPI through the dream at a real-time
budget, toward the predicted reward, a goal point (clicked) or a goal caption (typed).

A clicked point on a top-down world becomes the task's target (reacher: the target moves there,
and the planner maximises the predicted reward) or a goal picture (balls: the red ball drawn
there, encoded; the planner minimises the latent distance to it). A typed caption is encoded
alone (the caption-only path of the encoder) as the goal latent. The futures drawn are the last
imagined frames of a few of the planner's sampled action sequences, the chosen plan first.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import nnx

from worldmodel.imagine import Imaginer
from worldmodel.plan import PlanConfig, goal_cost, goal_weights, optimise, reward_cost, shift

REALTIME = PlanConfig(horizon=10, samples=96, iterations=2)
FUTURES = 4  # sampled futures drawn


def pixel_to_plane(world, u: float, v: float) -> np.ndarray | None:
    """A click at (u, v) in [0, 1]^2 of the frame -> world (x, y), for orthographic top cameras."""
    cam = world.model.camera(world.camera) if world.camera else None
    if (
        cam is None
        or world.model.cam_projection[cam.id] != mujoco.mjtProjection.mjPROJ_ORTHOGRAPHIC
    ):
        return None
    extent = float(world.model.cam_fovy[cam.id])  # orthographic: the view's height in metres
    centre = world.model.cam_pos[cam.id][:2]
    return centre + np.array([(u - 0.5) * extent, (0.5 - v) * extent])


class PlannerControl:
    """Acts for the person: one plan per control step, warm-started from the last."""

    def __init__(self, imaginer: Imaginer, world, cfg: PlanConfig = REALTIME) -> None:
        self.imaginer, self.world, self.cfg = imaginer, world, cfg
        self.goal: tuple[str, Any] | None = None  # ("point", xy) | ("caption", text)
        self.goal_z: jax.Array | None = None
        self.goal_w = jnp.ones(imaginer.cfg.z_dim)  # which of z's dimensions the goal speaks for
        self.mean = jnp.zeros((cfg.horizon, imaginer.cfg.action_dim))
        self.key = jax.random.key(0)
        self.futures: list[np.ndarray] = []
        g = imaginer.loaded.graphdef

        def plan(params, carry, mean, key, goal_z, goal_w, use_goal: bool):
            if use_goal:
                cost = goal_cost(g, params, carry, goal_z, goal_w)
            else:
                cost = reward_cost(g, params, carry)
            mean, _, samples = optimise(cost, key, mean, cfg)
            picks = jnp.concatenate([mean[None], samples[1:FUTURES]], 0)
            model = nnx.merge(g, params)
            start = jax.tree.map(lambda x: jnp.broadcast_to(x, (FUTURES, *x.shape[1:])), carry)
            _, zs = model.imagine(start, picks)
            frames = model.heads["frame"](zs[:, -1])
            return mean, jnp.round(frames * 255).astype(jnp.uint8)

        self._plan = jax.jit(plan, static_argnums=6)

    @property
    def label(self) -> str:
        if self.goal is None:
            return "planner: reward"
        kind, value = self.goal
        return f"planner: goal {value!r}" if kind == "caption" else "planner: goal point"

    def set_point(self, u: float, v: float) -> str:
        """A goal point clicked at (u, v) in [0, 1]^2 of the frame; returns a message."""
        xy = pixel_to_plane(self.world, u, v)
        if xy is None:
            return f"{self.world.name}: no top-down view to click a goal in; type a caption"
        d, m = self.world.data, self.world.model
        if self.world.name == "reacher":
            d.mocap_pos[0, :2] = xy  # the task's target: the planner maximises the reward
            mujoco.mj_forward(m, d)
            self.goal, self.goal_z = ("point", xy), None
            return f"target moved to ({xy[0]:.2f}, {xy[1]:.2f}); planning for reward"
        if self.world.name == "balls":
            saved = self.world.get_physics()
            home = m.body("red_ball").pos  # its slide joints measure from here
            d.qpos[m.joint("red_x").qposadr[0]] = xy[0] - home[0]
            d.qpos[m.joint("red_y").qposadr[0]] = xy[1] - home[1]
            mujoco.mj_forward(m, d)
            picture = self.world.observe()
            self.world.set_physics(saved)
            present = np.array([[True, False, False, False]])
            self.goal_z = self.imaginer.encode([picture], present)[0][0]
            self.goal_w = goal_weights(self.imaginer.cfg, "frame")
            self.goal = ("point", xy)
            return f"goal: the red ball at ({xy[0]:.2f}, {xy[1]:.2f})"
        return f"{self.world.name}: click goals are for reacher and balls; type a caption"

    def set_caption(self, text: str) -> str:
        words = text.lower().split()
        unknown = [w for w in words if w not in self.imaginer.vocab.index]
        known = " ".join(w for w in words if w in self.imaginer.vocab.index)
        if not known:
            return f"none of {text!r} is in {self.world.name}'s vocabulary; no goal set"
        obs = self.world.observe()
        obs["caption_tokens"] = self.imaginer.vocab.encode(known)
        present = np.array([[False, False, True, False]])
        self.goal_z = self.imaginer.encode([obs], present)[0][0]
        self.goal_w = goal_weights(self.imaginer.cfg, "caption")
        self.goal = ("caption", text)
        return f"goal: {text!r}" + (f" (unknown words ignored: {unknown})" if unknown else "")

    def act(self, carry) -> np.ndarray:
        """The first action of a fresh plan from the dream's carry, in the world's units."""
        self.key, k = jax.random.split(self.key)
        use_goal = self.goal_z is not None
        goal = self.goal_z if use_goal else jnp.zeros(self.imaginer.cfg.z_dim)
        self.mean, frames = self._plan(
            self.imaginer.params, carry, self.mean, k, goal, self.goal_w, use_goal
        )
        self.futures = list(np.asarray(frames))
        first = np.asarray(self.mean[0])
        self.mean = shift(self.mean)
        return self.world.action_spec.scale(first).astype(np.float32)
