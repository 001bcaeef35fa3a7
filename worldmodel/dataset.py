"""The dataset contract on disk: `dataset.json` plus one compressed `.npz` per episode
(plain arrays, read with allow_pickle=False).

Files are written to a temporary name and renamed, with fixed zip timestamps, so a crash never
leaves half an episode under a real name and the same recording gives byte-identical files. `check`
validates a dataset against its own `dataset.json` and names the file and field of the first
problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sims.captions import primary_event

FORMAT_VERSION = 1
META = "dataset.json"
_META_FIELDS = (
    "format_version",
    "world",
    "control_dt",
    "frame_shape",
    "audio",
    "caption",
    "action",
    "proprio_names",
    "state_names",
    "episodes",
)


class DatasetError(ValueError):
    """A dataset file or field is missing, malformed or inconsistent; the message names which."""


def expected_layout(meta: dict[str, Any], length: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Key -> (dtype kind, shape) that an episode of `length` steps must have under `meta`."""
    T = length
    return {
        "frame": ("uint8", (T + 1, *meta["frame_shape"])),
        "audio": ("float32", (T + 1, meta["audio"]["samples_per_step"])),
        "caption_tokens": ("int32", (T + 1, meta["caption"]["max_tokens"])),
        "caption": ("unicode", (T + 1,)),
        "proprio": ("float32", (T + 1, len(meta["proprio_names"]))),
        "state": ("float32", (T + 1, len(meta["state_names"]))),
        "action": ("float32", (T, len(meta["action"]["names"]))),
        "reward": ("float32", (T,)),
        "terminated": ("bool", (T,)),
        "truncated": ("bool", (T,)),
    }


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz that np.load reads, with fixed timestamps: equal arrays, equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()


def write_episode(
    folder: str | os.PathLike, episode_id: str, arrays: dict[str, np.ndarray]
) -> dict:
    """Write `episodes/<id>.npz` atomically; returns its index entry (id, file, length, sha256)."""
    data = npz_bytes(arrays)
    rel = f"episodes/{episode_id}.npz"
    path = Path(folder) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, data)
    return {
        "id": episode_id,
        "file": rel,
        "length": len(arrays["action"]),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def write_meta(folder: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write `dataset.json` atomically."""
    _atomic_write(Path(folder) / META, (json.dumps(meta, indent=1) + "\n").encode())


def read_meta(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and validate `dataset.json`; errors name the file and the field."""
    path = Path(folder) / META
    if not path.is_file():
        raise DatasetError(f"{path}: not found; a dataset folder holds dataset.json and episodes/")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object at the top level")
    for key in _META_FIELDS:
        if key not in meta:
            raise DatasetError(f"{path}: missing field {key!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {meta['format_version']!r}; this code reads {FORMAT_VERSION}"
        )
    for i, ep in enumerate(meta["episodes"]):
        for key in ("id", "file", "length", "sha256"):
            if key not in ep:
                raise DatasetError(f"{path}: episodes[{i}] has no field {key!r}")
    return meta


def load_episode(
    folder: str | os.PathLike, entry: dict[str, Any], meta: dict[str, Any], verify: bool = False
) -> dict[str, np.ndarray]:
    """Load one episode's arrays, checking keys, dtypes, shapes (and checksum if `verify`)."""
    path = Path(folder) / entry["file"]
    if not path.is_file():
        raise DatasetError(f"{path}: episode file is missing")
    raw = path.read_bytes()
    if verify and hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise DatasetError(
            f"{path}: checksum does not match dataset.json (file changed or corrupted)"
        )
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise DatasetError(f"{path}: cannot be read as an .npz episode ({e})") from None
    for key, (kind, shape) in expected_layout(meta, int(entry["length"])).items():
        if key not in arrays:
            raise DatasetError(f"{path}: field {key!r} is missing")
        a = arrays[key]
        ok = a.dtype.kind == "U" if kind == "unicode" else a.dtype == np.dtype(kind)
        if not ok:
            raise DatasetError(f"{path}: field {key!r} has dtype {a.dtype}; expected {kind}")
        if a.shape != shape:
            raise DatasetError(f"{path}: field {key!r} has shape {a.shape}; expected {shape}")
    return arrays


def iter_episodes(
    folder: str | os.PathLike, verify: bool = False, keep: list[bool] | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Every episode of a dataset (or those `keep` marks), in index order."""
    meta = read_meta(folder)
    for i, entry in enumerate(meta["episodes"]):
        if keep is None or keep[i]:
            yield load_episode(folder, entry, meta, verify=verify)


def check(folder: str | os.PathLike) -> dict[str, Any]:
    """Validate every episode (keys, dtypes, shapes, checksums, finite values); return a summary."""
    meta = read_meta(folder)
    steps = 0
    captioned = 0
    counts: dict[str, int] = {}
    power: dict[str, list[float]] = {}
    for entry in meta["episodes"]:
        ep = load_episode(folder, entry, meta, verify=True)
        path = Path(folder) / entry["file"]
        for key in ("audio", "proprio", "state", "action", "reward"):
            bad = ~np.isfinite(ep[key])
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise DatasetError(f"{path}: field {key!r} has a non-finite value at index {index}")
        steps += int(entry["length"])
        # Step t's caption and sound describe the step that led to observation t (t >= 1).
        for caption, audio in zip(ep["caption"][1:], ep["audio"][1:], strict=True):
            kind = primary_event(str(caption))
            captioned += bool(str(caption))
            counts[kind] = counts.get(kind, 0) + 1
            power.setdefault(kind, []).append(float(np.mean(audio.astype(np.float64) ** 2)))
    # Mean power over the steps of each kind, in dB: what a listener hears on average.
    energy = {
        k: max(10.0 * np.log10(max(float(np.mean(v)), 1e-12)), -120.0) for k, v in power.items()
    }
    return {
        "world": meta["world"],
        "episodes": len(meta["episodes"]),
        "steps": steps,
        "captioned_fraction": captioned / max(steps, 1),
        "caption_counts": dict(sorted(counts.items())),  # by each step's most salient event
        "audio_energy_db": {k: round(v, 1) for k, v in sorted(energy.items())},
    }
