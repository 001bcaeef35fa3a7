"""cartpole: a force on a cart carrying a hinged pole; the episode ends when the pole falls."""

from __future__ import annotations

import numpy as np

from sims.captions import Event
from sims.world import World

FALL_ANGLE = 0.8  # radians from upright at which the pole hits its stop: it has fallen


class Cartpole(World):
    """Classic cart-pole with a whining motor, rail end stops that clang, and a pole that falls."""

    name = "cartpole"
    asset = "cartpole.xml"
    camera = "side"
    keys = {"a": (0, -1.0), "d": (0, 1.0)}
    proprio_joints = ("slider", "hinge")
    extra_words = ("cart", "pole", "swings", "falls", "to", "end")
    move_min = 0.1
    move_quick = 1.0
    impact_min = 0.2
    motor_speed_ref = 2.0
    synth_options = {
        "impact_gain": 1.5,
        "whine_gain": 0.015,
        "whine_base_hz": 180.0,
        "whine_hz_per_speed": 260.0,
    }

    def _reset_state(self, rng: np.random.Generator) -> None:
        m, d = self.model, self.data
        d.qpos[m.joint("slider").qposadr[0]] = rng.uniform(-0.3, 0.3)
        d.qpos[m.joint("hinge").qposadr[0]] = rng.uniform(-0.08, 0.08)

    def angle(self) -> float:
        """Pole angle from upright, radians; positive leans right (+x)."""
        return float(self.data.qpos[self.model.joint("hinge").qposadr[0]])

    def _task(self, events: list[Event]) -> tuple[float, bool, list[Event]]:
        theta = self.angle()
        if abs(theta) >= FALL_ANGLE - 0.005:  # the hinge's limit: the stop it falls against
            side = "right" if theta > 0 else "left"
            return (
                0.0,
                True,
                [Event("fall", f"the pole falls to the {side}", 1.0, self.n_substeps - 1, 0)],
            )
        return float(np.cos(theta)), False, []

    def _limit_text(self, joint: int, high: bool) -> str:
        if self.model.joint(joint).name == "hinge":
            return ""  # the pole against its stop is the fall, told by _task
        return f"the cart hits the {'right' if high else 'left'} end"

    def _motions(self) -> list[Event]:
        """The faster of the cart's slide and the pole tip's swing (relative to the cart)."""
        m, d = self.model, self.data
        v = float(d.qvel[m.joint("slider").dofadr[0]])
        w = float(d.qvel[m.joint("hinge").dofadr[0]])  # pole length 1 m: tip speed = |w| m/s
        speed, subject, verb, sign = max(
            (abs(v), "the cart", "moves", v), (abs(w) * 0.5, "the pole", "swings", w)
        )
        if speed < self.move_min:
            return []
        bucket = "quickly" if speed >= self.move_quick else "slowly"
        text = f"{subject} {verb} {'right' if sign > 0 else 'left'} {bucket}"
        return [Event("motion", text, speed, self.n_substeps - 1, 2)]
