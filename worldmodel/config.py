"""Configs of the world model and its training, as frozen dataclasses, with named presets.

`tiny` is for tests (trains in seconds on a CPU); `small` is what the shipped checkpoints use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MODALITIES = ("frame", "audio", "caption", "proprio")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of encoder, backbone, dynamics and heads; data shapes are filled from the dataset."""

    frame_size: int = 64  # frames are frame_size x frame_size x 3
    samples_per_step: int = 800  # audio samples per control step (16 kHz at 20 Hz)
    n_mels: int = 32  # log-mel bands of a step's sound
    mel_frames: int = 8  # log-mel frames per step (hop = samples_per_step / mel_frames)
    vocab_size: int = 32  # caption vocabulary, <pad> and <eos> included
    caption_len: int = 16  # tokens per caption
    proprio_dim: int = 4  # proprioception features
    action_dim: int = 2  # action features (scaled to [-1, 1])
    width: int = 64  # token width of the shared backbone
    depth: int = 2  # transformer blocks in the backbone
    heads: int = 4  # attention heads
    stem: tuple[int, ...] = (
        16,
        32,
        32,
    )  # conv stem channels; each halves the frame, then 2x2 patches
    latent_dim: int = 64  # size of z's global part (pooled by the summary token)
    spatial_channels: int = 2  # channels of z's spatial part, a map on the stem's output grid
    # Keypoints: (x, y) of each channel's spatial-softmax peak on the stem's finer map, appended
    # to z. They place objects to a fraction of a pixel, where a grid cell of the map is 8 pixels.
    # 0 for checkpoints from before they existed.
    keypoints: int = 0
    # Motion: the stem also sees the frame minus the previous one, so z holds how things move
    # (one frame shows where the balls are, not where they go). Without a previous frame (an
    # episode's first step, a goal picture) the difference is zero. False for older checkpoints.
    motion: bool = False
    # A proprio head: z -> the step's proprioception (normalised). Its loss on imagined latents
    # asks the dynamics for the joints' velocities, which the action sets. After one step from the
    # same state, a +1 and a -1 elbow torque give elbow velocities 4.9 rad/s apart in the
    # simulator; reacher models imagined them 0.2-0.4 apart without the head, 1.5-1.8 with it and
    # 3.0 with `weights.proprio` 10 (README, Planning: such a model plans well on a known cost,
    # not yet through its reward head). False for older checkpoints.
    proprio_head: bool = False
    hidden_dim: int = 128  # GRU state of the dynamics
    decoder_channels: tuple[int, ...] = (64, 32, 16)  # pixel-shuffle decoder, from 8x8 up

    @property
    def grid(self) -> int:
        """Side of the stem's feature map (and of z's spatial part)."""
        return self.frame_size // 2 ** len(self.stem)

    @property
    def spatial_dim(self) -> int:
        return self.grid * self.grid * self.spatial_channels

    @property
    def keypoint_offset(self) -> int:
        """Where z's keypoints start: after the spatial map and the global part."""
        return self.spatial_dim + self.latent_dim

    @property
    def z_dim(self) -> int:
        """Size of z: the spatial map, flattened, the global part, then the keypoints' (x, y)."""
        return self.keypoint_offset + 2 * self.keypoints

    def __post_init__(self) -> None:
        if len(self.stem) != len(self.decoder_channels):
            raise ValueError(
                f"stem {self.stem} and decoder_channels {self.decoder_channels} must have the same "
                "length: the decoder starts from z's spatial map on the stem's grid"
            )
        if self.keypoints and len(self.stem) < 2:
            raise ValueError(
                f"keypoints {self.keypoints} are read from the stem's second-last map, so the "
                f"stem needs at least 2 layers; got stem {self.stem}"
            )
        if self.frame_size % 2 ** (len(self.stem) + 1):
            raise ValueError(
                f"frame_size {self.frame_size} must be divisible by {2 ** (len(self.stem) + 1)}"
            )


# The default weight of each loss. "keypoints" is the JEPA error on z's keypoints alone (zero
# without keypoints; in the mean over all of z they are 16 of 208 numbers in the tiny preset).
# Off by default: at 100 a reacher model (one run) imagined its keypoints better than copying the
# last ones from h=2 on (h=8: 0.073 against 0.10; the model it was compared with, trained
# without it: 0.098), but planned no better (success 0.28 against 0.44; see README, Planning).
LOSS_WEIGHTS = {
    "jepa": 1.0,
    "keypoints": 0.0,
    "vicreg": 1.0,
    "frame": 1000.0,
    "audio": 0.1,
    "caption": 0.1,
    "proprio": 1.0,
    "reward": 0.1,
    "done": 0.1,
}


@dataclass(frozen=True)
class TrainConfig:
    """How to train: batch, windows, objective weights, optimiser and the staged schedule."""

    batch: int = 8  # windows per step (split over devices)
    context: int = 4  # observed steps before open-loop prediction
    horizon: int = 8  # open-loop predicted steps (the JEPA rollout)
    steps: int = 300  # optimiser steps in total
    lr: float = 1e-3  # peak learning rate (warm-up then cosine decay)
    warmup: int = 50  # learning-rate warm-up steps
    clip: float = 1.0  # global gradient-norm clip
    ema: float = 0.99  # target-encoder EMA decay
    modality_dropout: float = 0.3  # chance a modality is hidden from the encoder (never all)
    # Predicted steps per window whose frames are decoded: the decoder's backward pass dominates a
    # CPU step, and a random subset per window covers every horizon over training.
    frame_decodes: int = 4
    # Pixels that differ from the dataset's background (its median frame) weigh this much more in
    # the frame loss. Off by default: at 10 the decoder painted a colour haze before it knew where
    # the balls were (h=4 PSNR 21.9 dB against 24.0 without, tiny preset, 250 steps).
    foreground_weight: float = 0.0
    task_head_lr: float = 3.0  # the reward and termination heads learn at this multiple of lr
    heads_grad_to_latent: bool = True  # heads train the latent (False: pure JEPA, heads on sg(z))
    grad_balance: bool = False  # scale each loss by 1 / its running mean instead of fixed weights
    # Loss weights lambda_m, keyed by the losses the model returns; keys left out take these
    # defaults (`--set 'weights={"frame": 500}'` changes one).
    weights: dict[str, float] = field(default_factory=lambda: dict(LOSS_WEIGHTS))
    # Staged schedule as fractions of `steps`: warm-up (encoders + heads, dynamics frozen),
    # cross-modal alignment (encoder only: single-modality latents pulled to the all-modality
    # target), then joint.
    stages: tuple[float, float] = (0.15, 0.3)
    log_every: int = 1  # write metrics every n steps
    ckpt_every: int = 100  # checkpoint every n steps
    keep: int = 3  # checkpoints kept
    seed: int = 0  # parameters, data order and dropout
    data_shards: int = 0  # episode i is in shard i % data_shards; 0 = one shard per process

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(LOSS_WEIGHTS))
        if unknown:
            raise ValueError(
                f"weights: unknown loss {', '.join(map(repr, unknown))}; the losses are "
                f"{', '.join(LOSS_WEIGHTS)}"
            )
        object.__setattr__(self, "weights", {**LOSS_WEIGHTS, **self.weights})


PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "tiny": (ModelConfig(keypoints=8), TrainConfig()),
    "small": (
        ModelConfig(
            width=96,
            depth=2,
            heads=4,
            stem=(24, 48, 64),
            latent_dim=64,
            spatial_channels=4,
            keypoints=8,
            hidden_dim=256,
            decoder_channels=(64, 48, 32),
        ),
        TrainConfig(
            batch=16,
            context=4,
            horizon=8,
            steps=1700,  # about 42 minutes on a 2-core CPU (1.45 s/step)
            lr=1e-3,
            warmup=100,
            stages=(0.1, 0.15),
            log_every=10,
            ckpt_every=500,
        ),
    ),
}


def preset(name: str, **overrides) -> tuple[ModelConfig, TrainConfig]:
    """A named preset with optional field overrides (model or train fields, by name)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    model, train = PRESETS[name]
    m_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    t_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - m_fields - t_fields
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}")
    model = dataclasses.replace(model, **{k: v for k, v in overrides.items() if k in m_fields})
    train = dataclasses.replace(train, **{k: v for k, v in overrides.items() if k in t_fields})
    return model, train
