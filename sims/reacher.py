"""reacher: a 2-link planar arm and a target placed at random on reset; a goal task for planning."""

from __future__ import annotations

import numpy as np

from sims.captions import Event
from sims.world import World

REACH_RADIUS = 0.05  # metres between fingertip and target centres that count as reached


class Reacher(World):
    """Reward is minus the fingertip's distance to the target; entering the radius is an event."""

    name = "reacher"
    asset = "reacher.xml"
    camera = "top"
    keys = {"a": (0, 1.0), "d": (0, -1.0), "w": (1, 1.0), "s": (1, -1.0)}
    proprio_joints = ("shoulder", "elbow")
    axis_words = (("left", "right"), ("down", "up"), ("down", "up"))
    extra_words = ("fingertip", "reaches", "target")
    move_min = 0.05
    move_quick = 0.35
    motor_speed_ref = 6.0  # rad/s
    synth_options = {
        "impact_gain": 5.0,
        "whine_gain": 0.012,
        "whine_base_hz": 260.0,
        "whine_hz_per_speed": 300.0,
    }

    def _reset_state(self, rng: np.random.Generator) -> None:
        m, d = self.model, self.data
        d.qpos[m.joint("shoulder").qposadr[0]] = rng.uniform(-np.pi, np.pi)
        d.qpos[m.joint("elbow").qposadr[0]] = rng.uniform(-2.0, 2.0)
        radius, angle = rng.uniform(0.05, 0.21), rng.uniform(-np.pi, np.pi)
        d.mocap_pos[0, :2] = radius * np.cos(angle), radius * np.sin(angle)
        self._reached = False

    def distance(self) -> float:
        """Fingertip-to-target distance in the plane, metres."""
        tip = self.data.body("fingertip").xpos[:2]
        return float(np.linalg.norm(tip - self.data.mocap_pos[0, :2]))

    def _task(self, events: list[Event]) -> tuple[float, bool, list[Event]]:
        dist = self.distance()
        inside = dist < REACH_RADIUS
        out = []
        if inside and not self._reached:
            self.synth.chime(self.n_substeps - 1)
            out.append(
                Event("reach", "the fingertip reaches the target", 1.0, self.n_substeps - 1, 0)
            )
        self._reached = inside
        return -dist, False, out

    def _motions(self) -> list[Event]:
        # Only the fingertip's motion is told: it is what the arm's task is about.
        return [e for e in super()._motions() if e.text.startswith("the fingertip")]
