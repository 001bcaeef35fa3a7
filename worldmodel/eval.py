"""Open-loop evaluation on held-out episodes: per horizon and modality, beside named baselines.

From `context` observed steps the model imagines `horizon` steps under the recorded actions;
frames, sound and captions are decoded and scored, and a linear probe reads the true physics state
out of the latent state (h, z) (`probe_r2` on grounded context states, `state_r2[h]` on imagined
ones; velocities need the memory h) so that blur cannot pass for tracking. Writes `metrics.json`,
PNGs, WAVs and `captions.txt`.
"""

from __future__ import annotations

import json
import os
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sims.captions import EOS, PAD, Vocabulary, event_types
from worldmodel.audio import griffin_lim, log_mel
from worldmodel.checkpoint import Loaded
from worldmodel.data import Windows
from worldmodel.encoders import with_prev_frames
from worldmodel.heads import decode_caption

KEYS = (
    "frame_psnr",
    "frame_ssim",
    "audio_logmel_l1",
    "audio_onset_f1",
    "caption_exact",
    "caption_event_f1",
    "state_r2",
)
BASELINES = ("copy_last", "mean_frame", "silence", "empty_caption")
SILENCE_LOGMEL = float(np.log(1e-5))
ONSET_RISE = 2.0  # nats of frame-energy rise (about 9 dB) that make an onset
ONSET_FLOOR = SILENCE_LOGMEL + 4.0  # ignore rises that stay near silence
# Read-outs from latents (the state probe, the imagined environment's proprio) use this ridge,
# relative to the features' mean variance. At 1e-3 they leaned on directions in which encoded
# latents barely vary (background cells) and in which imagined latents drift: the shipped
# reacher's state_r2 at h=1 / 8 / 16 read 0.54 / -6.2 / -39 with it and 0.77 / 0.49 / -0.31 at
# 0.1, while the probe on encoded latents moved from 0.83 to 0.80.
READOUT_RIDGE = 0.1


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate."""

    context: int = 8  # observed steps before imagining
    horizon: int = 16  # imagined steps
    episodes: int | None = None  # held-out episodes to use (None: all)
    windows_per_episode: int = 4  # evenly spaced windows per episode
    probe_samples: int = 4000  # training observations the state probe is fit on
    probe_ridge: float = READOUT_RIDGE  # the probe's ridge (see READOUT_RIDGE)
    batch: int = 32  # windows per forward pass


def make_predict(loaded: Loaded, context: int):
    """jit: (params, obs [B, C, ...], actions [B, C-1+H, A]) -> (z [B, C, D], memory h [B, C, M]
    of the grounded context (h_t has read the steps before t), predicted z [B, H, D] and their
    memory [B, H, M]). A recurrent model's latent state is (h, z): what it remembers and sees."""

    @jax.jit
    def predict(params, obs, actions):
        model = nnx.merge(loaded.graphdef, params)
        B = obs["frame"].shape[0]
        if loaded.cfg.motion:
            obs = with_prev_frames(obs)
        z = model.encode({k: v.reshape(B * context, *v.shape[2:]) for k, v in obs.items()})
        z = z.reshape(B, context, -1)

        def ground(carry, t):
            h, _ = model.dynamics((carry[0], z[:, t]), actions[:, t])
            return (h, z[:, t + 1]), h

        carry, hs = jax.lax.scan(ground, model.dynamics.initial(z[:, 0]), jnp.arange(context - 1))
        h_ctx = jnp.concatenate([carry[0][None] * 0, hs]).swapaxes(0, 1)

        def dream(carry, a):
            carry = model.dynamics(carry, a)
            return carry, carry

        _, (ph, pz) = jax.lax.scan(dream, carry, actions[:, context - 1 :].swapaxes(0, 1))
        return z, h_ctx, pz.swapaxes(0, 1), ph.swapaxes(0, 1)

    return predict


def make_decode(loaded: Loaded):
    """jit: (params, z [N, D]) -> frame float[N,H,W,3], log-mel [N,F,M], caption tokens int[N,L]."""

    @jax.jit
    def decode(params, z):
        out = nnx.merge(loaded.graphdef, params).decode(z, ("frame", "audio", "caption"))
        return out["frame"], out["audio"], decode_caption(out["caption"])

    return decode


def _gauss_blur(x: jax.Array) -> jax.Array:
    k = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
    k = jnp.asarray(k / k.sum(), x.dtype)
    c = x.shape[-1]
    dn = ("NHWC", "HWIO", "NHWC")
    x = jax.lax.conv_general_dilated(
        x,
        jnp.tile(k[:, None, None, None], (1, 1, 1, c)),
        (1, 1),
        "VALID",
        dimension_numbers=dn,
        feature_group_count=c,
    )
    return jax.lax.conv_general_dilated(
        x,
        jnp.tile(k[None, :, None, None], (1, 1, 1, c)),
        (1, 1),
        "VALID",
        dimension_numbers=dn,
        feature_group_count=c,
    )


@jax.jit
def ssim(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean SSIM per image of float[N, H, W, 3] in [0, 1] (Gaussian window 11, sigma 1.5)."""
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = _gauss_blur(a), _gauss_blur(b)
    var_a = _gauss_blur(a * a) - mu_a**2
    var_b = _gauss_blur(b * b) - mu_b**2
    cov = _gauss_blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return s.mean(axis=(1, 2, 3))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB per image of float[N, ...] in [0, 1]."""
    mse = np.mean((a - b) ** 2, axis=tuple(range(1, a.ndim)))
    return 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))


def onsets(mel: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """bool[N, T]: does each step's sound start something? mel float[N, T, F, M]; prev [N, F, M]."""
    energy = np.log(np.mean(np.exp(np.concatenate([prev[:, None], mel], 1)), axis=-1))  # [N,T+1,F]
    N, T, F = mel.shape[0], mel.shape[1], mel.shape[2]
    flat = energy.reshape(N, -1)
    rise = np.diff(flat, axis=1)[:, F - 1 :].reshape(N, T, F)  # the rises into each step's frames
    level = flat[:, F:].reshape(N, T, F)
    return ((rise > ONSET_RISE) & (level > ONSET_FLOOR)).any(-1)


def f1(pred: np.ndarray, true: np.ndarray) -> float:
    """F1 of boolean arrays; 1.0 when both are empty (nothing to find, nothing claimed)."""
    tp = float(np.sum(pred & true))
    fp, fn = float(np.sum(pred & ~true)), float(np.sum(~pred & true))
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def event_f1(pred: list[str], true: list[str]) -> float:
    tp = fp = fn = 0
    for p, t in zip(pred, true, strict=True):
        ps, ts = event_types(p), event_types(t)
        tp, fp, fn = tp + len(ps & ts), fp + len(ps - ts), fn + len(ts - ps)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def fit_readout(
    z: np.ndarray, target: np.ndarray, ridge: float = READOUT_RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression target ~ z @ w + b (the intercept unpenalised); `ridge` is relative to
    the features' mean variance, so the read-out does not depend on their overall scale.
    -> (w float32[D, P], b float32[P])."""
    z, target = z.astype(np.float64), target.astype(np.float64)
    zm, tm = z.mean(0), target.mean(0)
    zc, tc = z - zm, target - tm
    gram = zc.T @ zc
    lam = ridge * max(np.trace(gram) / len(gram), 1e-12)
    w = np.linalg.solve(gram + lam * np.eye(len(gram)), zc.T @ tc)
    return w.astype(np.float32), (tm - zm @ w).astype(np.float32)


class Probe:
    """Ridge regression from latents to the standardised true state (a linear read-out). The
    ridge is relative to the features' overall variance, not applied to features standardised
    one by one: a latent cell that barely moves on real frames (background) would otherwise be
    blown up to unit variance, and the small drift of an imagined latent there would swamp the
    read-out."""

    def __init__(self, z: np.ndarray, state: np.ndarray, ridge: float = READOUT_RIDGE) -> None:
        self.s_mean, self.s_std = state.mean(0), state.std(0)
        self.live = self.s_std > 1e-6  # constant state entries (a fixed target height) say nothing
        y = (state[:, self.live] - self.s_mean[self.live]) / self.s_std[self.live]
        self.w, self.b = fit_readout(z, y, ridge)

    def predict(self, z: np.ndarray) -> np.ndarray:
        return z @ self.w + self.b

    def r2(self, pred_std: np.ndarray, state: np.ndarray) -> float:
        """R^2 averaged over live state dimensions, in standardised units."""
        y = (state[:, self.live] - self.s_mean[self.live]) / self.s_std[self.live]
        sse = np.sum((pred_std - y) ** 2, 0)
        sst = np.sum((y - y.mean(0)) ** 2, 0)
        return float(np.mean(1.0 - sse / np.maximum(sst, 1e-9)))


def _fit_probe(
    loaded: Loaded,
    predict,
    train_data: str,
    context: int,
    samples: int,
    ridge: float,
    seed: int = 0,
) -> Probe:
    """Fit the state probe on grounded latent states (h_t, z_t), t >= 1, of training windows."""
    train = Windows(train_data, context + 1, loaded.norm)
    rng = np.random.default_rng(seed)
    starts = train.all_starts
    n = min(max(samples // (context - 1), 1), len(starts))
    where = [starts[i] for i in rng.choice(len(starts), n, replace=False)]
    feats, states = [], []
    for i in range(0, len(where), 64):
        b = train.stack(where[i : i + 64])
        obs = {
            k: jnp.asarray(b[k][:, :context])
            for k in ("frame", "audio", "caption_tokens", "proprio")
        }
        z, h, _, _ = predict(loaded.params, obs, jnp.asarray(b["action"]))
        feats.append(
            np.concatenate([np.asarray(h), np.asarray(z)], -1)[:, 1:].reshape(
                -1, h.shape[-1] + z.shape[-1]
            )
        )
        states.append(b["state"][:, 1:context].reshape(-1, b["state"].shape[-1]))
    return Probe(np.concatenate(feats), np.concatenate(states), ridge)


def evaluate(
    loaded: Loaded,
    data: str | os.PathLike,
    out: str | os.PathLike,
    cfg: EvalConfig,
    train_data: str | None = None,
) -> dict[str, Any]:
    """Evaluate on the held-out dataset `data`; writes the report folder `out`; returns metrics."""
    C, H = cfg.context, cfg.horizon
    held = Windows(data, C + H, loaded.norm)
    if held.meta["caption"]["vocab"] != loaded.config["vocab"]:
        raise ValueError(
            f"{data}: caption vocabulary differs from the checkpoint's "
            f"({loaded.config['world']}); evaluate on data of the same world"
        )
    if list(held.meta["frame_shape"][:2]) != [loaded.cfg.frame_size] * 2:
        raise ValueError(
            f"{data}: frames are {held.meta['frame_shape']}, the checkpoint expects "
            f"{loaded.cfg.frame_size}x{loaded.cfg.frame_size}"
        )
    episodes = held.long[: cfg.episodes] if cfg.episodes else held.long
    where = []
    for e in range(len(episodes)):
        last = len(episodes[e]["action"]) + 1 - (C + H)
        where += [
            (e, int(s)) for s in np.unique(np.linspace(0, last, cfg.windows_per_episode).round())
        ]
    predict, decode = make_predict(loaded, C), make_decode(loaded)
    probe = _fit_probe(
        loaded, predict, train_data or loaded.config["data"], C, cfg.probe_samples, cfg.probe_ridge
    )
    R: dict[str, list] = {k: [] for k in ("z", "h", "pred", "pred_h", "frame", "mel", "tok")}
    T: dict[str, list] = {k: [] for k in ("frame", "audio", "caption_tokens", "state", "caption")}
    for i in range(0, len(where), cfg.batch):
        b = held.stack(where[i : i + cfg.batch])
        obs = {k: jnp.asarray(b[k][:, :C]) for k in ("frame", "audio", "caption_tokens", "proprio")}
        z, h, preds, pred_h = predict(loaded.params, obs, jnp.asarray(b["action"]))
        frame, mel, tok = decode(loaded.params, preds.reshape(-1, preds.shape[-1]))
        n = z.shape[0]
        R["z"].append(np.asarray(z))
        R["pred"].append(np.asarray(preds))
        R["h"].append(np.asarray(h))
        R["pred_h"].append(np.asarray(pred_h))
        R["frame"].append(np.asarray(frame).reshape(n, H, *frame.shape[1:]))
        R["mel"].append(np.asarray(mel).reshape(n, H, *mel.shape[1:]))
        R["tok"].append(np.asarray(tok).reshape(n, H, -1))
        for k in ("frame", "audio", "caption_tokens", "state"):
            T[k].append(b[k])
    R = {k: np.concatenate(v) for k, v in R.items()}
    T = {k: np.concatenate(v) for k, v in T.items() if v}
    vocab = Vocabulary(loaded.config["vocab"])
    metrics = _score(loaded, probe, R, T, held, vocab, C, H)
    _report(Path(out), loaded, R, T, vocab, metrics, C, H)
    return metrics


def _score(loaded, probe, R, T, held, vocab, C, H) -> dict[str, Any]:
    N = len(R["z"])
    true_frame = T["frame"][:, C:].astype(np.float32) / 255.0  # [N, H, h, w, 3]
    true_mel = np.asarray(
        log_mel(jnp.asarray(T["audio"]), loaded.cfg.n_mels, loaded.cfg.mel_frames)
    )
    last_mel, true_mel = true_mel[:, C - 1], true_mel[:, C:]
    true_tok, true_state = T["caption_tokens"][:, C:], T["state"][:, C:]
    true_text = [[vocab.decode(t) for t in row] for row in true_tok]
    true_on = onsets(true_mel, last_mel)

    def per_h(fn) -> list[float]:
        return [float(fn(h)) for h in range(H)]

    def scores(frame=None, mel=None, tok=None, state_std=None) -> dict[str, list[float] | None]:
        s: dict[str, list[float] | None] = dict.fromkeys(KEYS)
        if frame is not None:
            s["frame_psnr"] = per_h(lambda h: psnr(frame(h), true_frame[:, h]).mean())
            s["frame_ssim"] = per_h(
                lambda h: np.mean(ssim(jnp.asarray(frame(h)), jnp.asarray(true_frame[:, h])))
            )
        if mel is not None:
            m = np.stack([mel(h) for h in range(H)], 1)
            s["audio_logmel_l1"] = per_h(lambda h: np.abs(m[:, h] - true_mel[:, h]).mean())
            on = onsets(m, last_mel)
            s["audio_onset_f1"] = per_h(lambda h: f1(on[:, h], true_on[:, h]))
        if tok is not None:
            s["caption_exact"] = per_h(lambda h: np.mean(np.all(tok(h) == true_tok[:, h], -1)))
            s["caption_event_f1"] = per_h(
                lambda h: event_f1([vocab.decode(t) for t in tok(h)], [r[h] for r in true_text])
            )
        if state_std is not None:
            s["state_r2"] = per_h(lambda h: probe.r2(state_std(h), true_state[:, h]))
        return s

    latent = np.concatenate([R["h"], R["z"]], -1)  # grounded (h, z) in the context
    dreamt = np.concatenate([R["pred_h"], R["pred"]], -1)  # imagined (h, z)
    pred_state = probe.predict(dreamt.reshape(N * H, -1)).reshape(N, H, -1)
    copy_state = probe.predict(latent[:, C - 1])
    mean_frame = np.mean(np.stack([ep["frame"].mean(0) for ep in held.long]), 0) / 255.0
    mean_mel = true_mel.mean((0, 1))
    empty = np.full(true_tok.shape[-1], PAD, np.int32)
    empty[0] = EOS
    model = scores(
        frame=lambda h: R["frame"][:, h],
        mel=lambda h: R["mel"][:, h],
        tok=lambda h: R["tok"][:, h],
        state_std=lambda h: pred_state[:, h],
    )
    baselines = {
        "copy_last": scores(
            frame=lambda h: T["frame"][:, C - 1].astype(np.float32) / 255.0,
            mel=lambda h: last_mel,
            tok=lambda h: T["caption_tokens"][:, C - 1],
            state_std=lambda h: copy_state,
        ),
        "mean_frame": scores(
            frame=lambda h: np.broadcast_to(mean_frame, true_frame[:, h].shape),
            mel=lambda h: np.broadcast_to(mean_mel, true_mel[:, h].shape),
            state_std=lambda h: np.zeros_like(copy_state),
        ),
        "silence": scores(mel=lambda h: np.full_like(true_mel[:, h], SILENCE_LOGMEL)),
        "empty_caption": scores(tok=lambda h: np.broadcast_to(empty, true_tok[:, h].shape)),
    }
    from worldmodel.losses import effective_rank

    z_all = R["z"].reshape(-1, R["z"].shape[-1])
    return {
        "horizons": list(range(1, H + 1)),
        "latent_dim": int(z_all.shape[1]),
        "effective_rank": float(effective_rank(jnp.asarray(z_all))),
        "probe_r2": probe.r2(
            probe.predict(latent[:, 1:].reshape(-1, latent.shape[-1])),
            T["state"][:, 1:C].reshape(-1, T["state"].shape[-1]),
        ),
        "model": model,
        "baselines": baselines,
        "windows": int(N),
    }


def _report(out: Path, loaded, R, T, vocab, metrics, C, H) -> None:
    from worldmodel.plots import metric_plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    import imageio.v3 as iio

    rows = []
    for w in range(min(4, len(R["z"]))):
        rows.append(np.concatenate(list(T["frame"][w, C:]), 1))
        rows.append(np.concatenate(list((R["frame"][w] * 255).round().astype(np.uint8)), 1))
    grid = np.concatenate(rows, 0)
    iio.imwrite(out / "frames.png", np.repeat(np.repeat(grid, 2, 0), 2, 1))
    metric_plots(metrics, out / "metrics.png")
    sr = loaded.config.get("sample_rate", 16000)
    steps = loaded.cfg.samples_per_step
    pred_wave = jax.vmap(lambda m: griffin_lim(m, steps))(jnp.asarray(R["mel"][0]))
    _wav(out / "audio_true.wav", T["audio"][0, C:].reshape(-1), sr)
    _wav(out / "audio_pred.wav", np.asarray(pred_wave).reshape(-1), sr)
    with open(out / "captions.txt", "w") as f:
        for w in range(min(8, len(R["z"]))):
            f.write(f"window {w}\n")
            for h in range(H):
                f.write(
                    f"  h={h + 1:2d} true: {vocab.decode(T['caption_tokens'][w, C + h])!r:60} "
                    f"pred: {vocab.decode(R['tok'][w, h])!r}\n"
                )


def _wav(path: Path, x: np.ndarray, sr: int) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


def table(metrics: dict[str, Any], horizons: tuple[int, ...] = (1, 2, 4, 8, 16)) -> str:
    """A plain-text table: each metric at a few horizons, model beside every baseline."""
    hs = [h for h in horizons if h <= len(metrics["horizons"])]
    lines = [
        f"latent_dim {metrics['latent_dim']}  effective_rank {metrics['effective_rank']:.1f}  "
        f"probe_r2 {metrics['probe_r2']:.3f}  windows {metrics['windows']}",
        f"{'metric':<18}{'who':<15}" + "".join(f"h={h:<6}" for h in hs),
    ]
    for key in KEYS:
        for who, vals in [("model", metrics["model"][key])] + [
            (b, metrics["baselines"][b][key]) for b in BASELINES
        ]:
            if vals is not None:
                lines.append(f"{key:<18}{who:<15}" + "".join(f"{vals[h - 1]:<8.3f}" for h in hs))
    return "\n".join(lines)
