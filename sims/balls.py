"""balls: three balls of rubber, wood and metal in a walled arena; the action pushes the red one."""

from __future__ import annotations

import numpy as np

from sims.captions import Event
from sims.world import World

BALLS = ("red_ball", "green_ball", "blue_ball")
ARENA = 1.0  # inner half-width of the arena, metres


class Balls(World):
    """Rich collisions and sounds: the user pushes the red ball into the others and the walls."""

    name = "balls"
    asset = "balls.xml"
    camera = "top"
    keys = {"a": (0, -1.0), "d": (0, 1.0), "s": (1, -1.0), "w": (1, 1.0)}
    proprio_joints = ("red_x", "red_y")  # the pushed ball senses its own position and velocity
    axis_words = (("left", "right"), ("down", "up"), ("down", "up"))  # seen from above: y is up
    move_min = 0.08
    move_quick = 0.6
    motor_speed_ref = 2.0
    synth_options = {"impact_gain": 1.5, "whine_gain": 0.006, "whine_base_hz": 140.0}
    initial_speed = 2.0  # m/s, the largest speed a ball starts with; 0 gives a still world

    def _reset_state(self, rng: np.random.Generator) -> None:
        m, d = self.model, self.data
        placed: list[tuple[float, float, float]] = []
        for name in BALLS:
            b = m.body(name)
            r = float(m.geom_size[m.body_geomadr[b.id], 0])
            for _ in range(1000):  # rejection sampling: no overlaps, clear of the walls
                x, y = rng.uniform(-ARENA + r + 0.02, ARENA - r - 0.02, size=2)
                if all(np.hypot(x - px, y - py) > r + pr + 0.05 for px, py, pr in placed):
                    break
            placed.append((x, y, r))
            jx, jy = m.joint(name.replace("ball", "x")), m.joint(name.replace("ball", "y"))
            d.qpos[jx.qposadr[0]] = x - m.body_pos[b.id, 0]
            d.qpos[jy.qposadr[0]] = y - m.body_pos[b.id, 1]
            speed = rng.uniform(0.0, self.initial_speed)
            angle = rng.uniform(0.0, 2 * np.pi)
            d.qvel[jx.dofadr[0]], d.qvel[jy.dofadr[0]] = (
                speed * np.cos(angle),
                speed * np.sin(angle),
            )

    def _task(self, events: list[Event]) -> tuple[float, bool, list[Event]]:
        """Reward: one per ball-on-ball impact, a billiards player's score."""
        hits = sum(
            1
            for e in events
            if e.type == "impact" and all(b.endswith("ball") for b in e.data["bodies"])
        )
        return float(hits), False, []
