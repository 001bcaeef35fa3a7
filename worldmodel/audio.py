"""Sound features in JAX: a step's waveform to log-mel frames, and log-mel back to a waveform.

The inverse is Griffin-Lim: mel to linear magnitude through the filterbank's pseudo-inverse, then
phase recovered by alternating projections (a fixed number of iterations, jit-friendly).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

SAMPLE_RATE = 16_000
_EPS = 1e-5


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """float32[n_fft // 2 + 1, n_mels] triangular filters evenly spaced on the mel scale."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)


def _frames(x: jax.Array, n_fft: int, hop: int, n_frames: int) -> jax.Array:
    pad = n_fft // 2
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])
    idx = jnp.arange(n_frames)[:, None] * hop + jnp.arange(n_fft)[None]
    return x[..., idx] * jnp.hanning(n_fft)


def log_mel(audio: jax.Array, n_mels: int, n_frames: int) -> jax.Array:
    """float32[..., S] waveforms -> float32[..., n_frames, n_mels] log-mel (natural log)."""
    S = audio.shape[-1]
    hop = S // n_frames
    n_fft = 2 * hop
    spec = jnp.abs(jnp.fft.rfft(_frames(audio, n_fft, hop, n_frames), axis=-1))
    return jnp.log(spec @ mel_filterbank(n_fft, n_mels) + _EPS)


def griffin_lim(logmel: jax.Array, samples: int, iterations: int = 16, seed: int = 0) -> jax.Array:
    """float32[F, n_mels] log-mel -> float32[samples] waveform by Griffin-Lim phase recovery."""
    n_frames, n_mels = logmel.shape
    hop = samples // n_frames
    n_fft = 2 * hop
    fb = mel_filterbank(n_fft, n_mels)
    mag = jnp.maximum(jnp.exp(logmel) - _EPS, 0.0) @ jnp.asarray(np.linalg.pinv(fb))
    mag = jnp.maximum(mag, 0.0)
    window = jnp.hanning(n_fft)
    pad = n_fft // 2
    idx = jnp.arange(n_frames)[:, None] * hop + jnp.arange(n_fft)[None]
    norm = jnp.zeros(samples + 2 * pad).at[idx].add(window**2)

    def istft(spec):
        frames = jnp.fft.irfft(spec, n_fft, axis=-1) * window
        out = jnp.zeros(samples + 2 * pad).at[idx].add(frames)
        return (out / jnp.maximum(norm, 1e-6))[pad : pad + samples]

    phase = jnp.exp(2j * jnp.pi * jax.random.uniform(jax.random.key(seed), mag.shape))

    def body(phase, _):
        x = istft(mag * phase)
        spec = jnp.fft.rfft(_frames(x, n_fft, hop, n_frames), axis=-1)
        return spec / jnp.maximum(jnp.abs(spec), 1e-8), None

    phase, _ = jax.lax.scan(body, phase, None, length=iterations)
    return jnp.clip(istft(mag * phase), -1.0, 1.0)
