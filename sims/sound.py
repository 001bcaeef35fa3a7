"""Sound synthesised from the physics: modal impacts, sliding noise and motor whine, one chunk per
step.

A `Synth` is told what happened in each physics substep (impacts, sustained sliding, actuator
states) and renders the control step's chunk of audio. Ringing impacts and motor phase carry over
into later chunks, so consecutive chunks join without clicks. Nothing told means exact silence (plus
an optional noise floor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Material:
    """How a material rings when struck and hisses when it slides."""

    modes: tuple[float, ...]  # mode frequencies in Hz for a body of REFERENCE_SIZE metres
    decays: tuple[float, ...]  # exponential decay rate of each mode, 1/s
    gains: tuple[float, ...]  # relative amplitude of each mode
    band: tuple[float, float]  # frequency band of sliding noise, Hz
    hiss: float  # sliding-noise gain per m/s of slip


REFERENCE_SIZE = 0.1  # metres; smaller bodies ring higher (f ~ size^-1/2)

MATERIALS: dict[str, Material] = {
    "rubber": Material(
        (190.0, 430.0, 720.0), (60.0, 80.0, 100.0), (1.0, 0.5, 0.25), (60, 500), 0.007
    ),
    "wood": Material(
        (520.0, 1150.0, 1900.0), (35.0, 50.0, 65.0), (1.0, 0.6, 0.3), (150, 1800), 0.01
    ),
    "metal": Material(
        (1250.0, 3450.0, 5300.0), (16.0, 22.0, 30.0), (1.0, 0.7, 0.4), (800, 6000), 0.01
    ),
    "stone": Material(
        (380.0, 950.0, 1700.0), (45.0, 60.0, 80.0), (1.0, 0.5, 0.3), (100, 2500), 0.01
    ),
    "plastic": Material(
        (850.0, 2100.0, 3400.0), (30.0, 42.0, 55.0), (1.0, 0.6, 0.35), (300, 4000), 0.007
    ),
}
DEFAULT_MATERIAL = "plastic"

_MAX_FREQ = 7_500.0  # stay below Nyquist at 16 kHz
_CUTOFF = 1e-4  # a voice quieter than this is dropped
_ATTACK = 8  # samples of linear attack: a struck body still takes a moment to speak
_FADE = 64  # samples of equal-power cross-fade between chunks of sliding noise
_FADE_IN = np.sqrt(np.linspace(0.0, 1.0, _FADE))
_FADE_OUT = np.sqrt(1.0 - np.linspace(0.0, 1.0, _FADE))


class Synth:
    """Renders one control step of audio from the physics events of its substeps."""

    def __init__(
        self,
        *,
        samples_per_step: int,
        n_substeps: int,
        n_motors: int,
        sample_rate: int = SAMPLE_RATE,
        impact_gain: float = 0.6,
        whine_gain: float = 0.04,
        whine_base_hz: float = 220.0,
        whine_hz_per_speed: float = 120.0,
        noise_floor: float = 0.0,
    ) -> None:
        if samples_per_step % n_substeps:
            raise ValueError(
                f"samples_per_step={samples_per_step} must be a multiple of n_substeps={n_substeps}"
            )
        self.sr = sample_rate
        self.S = samples_per_step
        self.K = n_substeps
        self.sub = samples_per_step // n_substeps
        self.n_motors = n_motors
        self.impact_gain = impact_gain
        self.whine_gain = whine_gain
        self.whine_base_hz = whine_base_hz
        self.whine_hz_per_speed = whine_hz_per_speed
        self.noise_floor = noise_floor
        self._t = np.arange(self.S, dtype=np.float64)
        self.reset(np.random.default_rng(0))

    def reset(self, rng: np.random.Generator) -> None:
        """Silence everything; `rng` drives the sliding noise so a seed gives the same sound."""
        self.rng = rng
        # Ringing voices: frequency, decay, amplitude, onset sample relative to this chunk's start.
        self._voices = np.zeros((0, 4))
        self._new: list[tuple[float, float, float, float]] = []
        self._hiss = {m: np.zeros(self.K) for m in MATERIALS}
        self._hiss_last = {m: 0.0 for m in MATERIALS}
        self._hiss_tail: dict[str, np.ndarray] = {}
        self._motor_hz = np.zeros((self.K, self.n_motors))
        self._motor_amp = np.zeros((self.K, self.n_motors))
        self._motor_last = np.zeros((2, self.n_motors))  # last substep's (hz, amp), for continuity
        self._phase = np.zeros(self.n_motors)

    # --- events, told per substep -------------------------------------------------------------
    def impact(
        self,
        substep: int,
        speed: float,
        mass: float,
        parts: list[tuple[str, float]],
        frac: float = 0.0,
    ) -> None:
        """A contact began at `substep` with normal `speed` (m/s); parts: (material, size)."""
        amp = min(1.0, self.impact_gain * speed * np.sqrt(max(mass, 1e-3)))
        onset = substep * self.sub + frac * self.sub
        for material, size in parts:
            mat = MATERIALS.get(material, MATERIALS[DEFAULT_MATERIAL])
            scale = np.sqrt(REFERENCE_SIZE / max(size, 1e-3))
            norm = sum(mat.gains) * len(parts)
            for f, d, g in zip(mat.modes, mat.decays, mat.gains, strict=True):
                self._new.append((min(f * scale, _MAX_FREQ), d, amp * g / norm, onset))

    def chime(self, substep: int, amp: float = 0.4) -> None:
        """A bell for task events (a target reached): not physics, but what a game would play."""
        for f, d, g in ((880.0, 25.0, 1.0), (1760.0, 32.0, 0.4), (2640.0, 40.0, 0.2)):
            self._new.append((f, d, amp * g / 1.6, substep * self.sub))

    def slide(self, substep: int, material: str, slip: float) -> None:
        """A sustained contact slides at `slip` m/s during `substep`."""
        key = material if material in MATERIALS else DEFAULT_MATERIAL
        self._hiss[key][substep] += MATERIALS[key].hiss * slip

    def motors(self, substep: int, speed: np.ndarray, effort: np.ndarray) -> None:
        """Actuator speeds (|velocity|, any unit) and efforts (|force| / max force, 0..1)."""
        self._motor_hz[substep] = self.whine_base_hz + self.whine_hz_per_speed * np.abs(speed)
        drive = 0.25 * np.clip(effort, 0.0, 1.0) + 0.75 * np.minimum(1.0, np.abs(speed))
        self._motor_amp[substep] = self.whine_gain * drive

    # --- rendering ------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """The step's audio, float32[samples_per_step] in [-1, 1]; then ready for the next step."""
        out = self._render_voices() + self._render_hiss() + self._render_motors()
        if self.noise_floor > 0:
            out += self.noise_floor * self.rng.standard_normal(self.S)
        self._motor_hz[:] = 0.0
        self._motor_amp[:] = 0.0
        return np.tanh(out).astype(np.float32)  # soft limit; tanh(0) == 0 keeps silence exact

    def _render_voices(self) -> np.ndarray:
        if self._new:
            self._voices = np.concatenate([self._voices, np.array(self._new)])
            self._new.clear()
        if not len(self._voices):
            return np.zeros(self.S)
        f, d, a, t0 = self._voices.T
        age = self._t[None, :] - t0[:, None]  # samples since onset
        env = a[:, None] * np.exp(-d[:, None] * np.maximum(age, 0) / self.sr)
        env *= np.clip(age / _ATTACK, 0.0, 1.0)  # zero before onset, short attack after
        out = (env * np.sin(2 * np.pi * f[:, None] * np.maximum(age, 0) / self.sr)).sum(0)
        # Carry into the next chunk whatever still rings at its start.
        t0 = t0 - self.S
        alive = a * np.exp(-d * np.maximum(-t0, 0) / self.sr) > _CUTOFF
        self._voices = np.stack([f, d, a, t0], axis=1)[alive]
        return out

    def _render_hiss(self) -> np.ndarray:
        out = np.zeros(self.S)
        n = self.S + _FADE
        freqs = np.fft.rfftfreq(n, 1.0 / self.sr)
        for name, amps in self._hiss.items():
            last = self._hiss_last[name]
            if not amps.any() and last == 0.0:
                self._hiss_tail.pop(name, None)
                continue
            band = MATERIALS[name].band
            spec = np.fft.rfft(self.rng.standard_normal(n))
            spec[(freqs < band[0]) | (freqs > band[1])] = 0.0
            noise = np.fft.irfft(spec, n)
            noise /= max(float(np.sqrt(np.mean(noise**2))), 1e-9)
            # Each chunk's noise is filtered on its own; cross-fade from the last chunk's overhang
            # (which continues it smoothly) so chunk boundaries do not click.
            tail = self._hiss_tail.get(name)
            if tail is not None:
                noise[:_FADE] = noise[:_FADE] * _FADE_IN + tail * _FADE_OUT
            self._hiss_tail[name] = noise[self.S :].copy()
            env = self._ramp(np.concatenate([[last], amps]))
            out += noise[: self.S] * env
            self._hiss_last[name] = float(amps[-1])
            amps[:] = 0.0
        return out

    def _render_motors(self) -> np.ndarray:
        if not self.n_motors or (not self._motor_amp.any() and not self._motor_last[1].any()):
            self._motor_last[:] = 0.0
            return np.zeros(self.S)
        out = np.zeros(self.S)
        for i in range(self.n_motors):
            last_hz = self._motor_last[0, i] or self._motor_hz[0, i]
            hz = self._ramp(np.concatenate([[last_hz], self._motor_hz[:, i]]))
            amp = self._ramp(np.concatenate([[self._motor_last[1, i]], self._motor_amp[:, i]]))
            phase = self._phase[i] + np.cumsum(2 * np.pi * hz / self.sr)
            out += amp * (np.sin(phase) + 0.35 * np.sin(2 * phase) + 0.15 * np.sin(3 * phase))
            self._phase[i] = phase[-1] % (2 * np.pi)
        self._motor_last[0] = self._motor_hz[-1]
        self._motor_last[1] = self._motor_amp[-1]
        return out

    def _ramp(self, knots: np.ndarray) -> np.ndarray:
        """Linear interpolation from the previous value through each substep's value, per sample."""
        x = (
            np.arange(self.S) + 1.0
        ) / self.sub  # knot 0: end of the last chunk; k: end of substep k-1
        return np.interp(x, np.arange(len(knots), dtype=np.float64), knots)


def energy_db(audio: np.ndarray, floor_db: float = -120.0) -> float:
    """Mean power of a chunk in dB (full scale 0 dB), floored so silence is finite."""
    power = float(np.mean(np.asarray(audio, dtype=np.float64) ** 2))
    return max(10.0 * np.log10(power) if power > 0 else floor_db, floor_db)
