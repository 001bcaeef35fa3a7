"""Load a trained world model: from a training run (Orbax checkpoint + config.json) or from an
exported checkpoint folder (`model.safetensors` + `config.json` + `card.json`: data only, nothing
that runs code).

`export` turns a run into the shipped form; loading it checks every name, shape and dtype.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from worldmodel.config import ModelConfig, TrainConfig
from worldmodel.data import Normalizer
from worldmodel.model import WorldModel, new_model


@dataclass
class Loaded:
    """A world model ready for inference: split NNX state for `jax.jit`, plus what it was fit to."""

    graphdef: nnx.GraphDef
    params: nnx.State
    cfg: ModelConfig
    norm: Normalizer
    config: dict[str, Any]  # the run's config.json (world, vocab, action spec, names, ...)

    @property
    def model(self) -> WorldModel:
        return nnx.merge(self.graphdef, self.params)


def _dataclass_from(cls, d: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


def read_config(run: str | os.PathLike) -> dict[str, Any]:
    path = Path(run) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; is {run} a training run or checkpoint folder?")
    return json.loads(path.read_text())


def load_run(run: str | os.PathLike, step: int | None = None, ema: bool = False) -> Loaded:
    """The latest (or given) checkpoint of a training run; `ema` loads the target encoder's copy."""
    from worldmodel.train import init_state, optimizer, restore

    run = Path(run)
    config = read_config(run)
    mcfg = _dataclass_from(ModelConfig, config["model"])
    tcfg = _dataclass_from(TrainConfig, {**config["train"], "weights": config["train"]["weights"]})
    graphdef, template = init_state(mcfg, tcfg, optimizer(tcfg))
    state = restore(run, graphdef, template, tcfg, step)
    params = state["ema" if ema else "params"]
    params = jax.tree.map(lambda x: x, params)
    return Loaded(graphdef, params, mcfg, Normalizer(**config["normalizer"]), config)


WEIGHTS = "model.safetensors"


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = np.asarray(v)
    return out


def _template(cfg: ModelConfig) -> tuple[nnx.GraphDef, nnx.State]:
    abstract = nnx.eval_shape(lambda: WorldModel(cfg, rngs=nnx.Rngs(0)))
    return nnx.split(abstract, nnx.Param)


def save(
    loaded: Loaded,
    out: str | os.PathLike,
    card: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write parameters as `out/model.safetensors` (atomically) with config.json and a card;
    `half` stores float16 (half the size; loading widens them back to float32)."""
    from safetensors.numpy import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    flat = _flatten(nnx.to_pure_dict(loaded.params))
    if half:
        flat = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in flat.items()}
    tmp = out / (WEIGHTS + ".tmp")
    save_file(flat, str(tmp), metadata={"format": "worldmodel/1"})
    os.chmod(tmp, 0o644)  # readable like any shipped file (the writer may create it 0600)
    os.replace(tmp, out / WEIGHTS)
    (out / "config.json").write_text(json.dumps(loaded.config, indent=1) + "\n")
    if card is not None:
        (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    return out / WEIGHTS


def export(
    run: str | os.PathLike,
    out: str | os.PathLike,
    card: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a training run's latest parameters in the shipped form (see `save`)."""
    return save(load_run(run), out, card, half)


def _commands(folder: Path) -> list[dict[str, Any]]:
    path = folder / "commands.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _record_command(data: str | os.PathLike) -> str | None:
    """The `worldmodel record` command that made a dataset, from its dataset.json."""
    meta_path = Path(data) / "dataset.json"
    if not meta_path.is_file():
        return None
    rec = json.loads(meta_path.read_text()).get("recording") or {}
    src = f"--mjcf {rec['mjcf']}" if rec.get("mjcf") else f"--world {rec.get('world')}"
    return (
        f"worldmodel record {src} --episodes {rec.get('episodes')} --steps {rec.get('steps')} "
        f"--policy {rec.get('policy')} --workers {rec.get('workers')} --seed {rec.get('seed')} "
        f"--size {rec.get('size')} --out {data}"
    )


def model_card(run: str | os.PathLike, report: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a shipped checkpoint says about itself: how its data was recorded, how it was trained
    (command, time, hardware) and, given an eval report folder, its held-out metrics."""
    run = Path(run)
    config = read_config(run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1]) if lines else {}
    trained = _commands(run)
    card: dict[str, Any] = {
        "world": config["world"],
        "record_command": _record_command(config["data"]),
        "train_command": trained[0]["command"] if trained else None,
        "train_steps": last.get("step"),
        "train_minutes": round(last["step"] / last["steps_per_s"] / 60, 1) if last else None,
        "hardware": trained[0]["hardware"] if trained else None,
        "model": config["model"],
    }
    if report is not None:
        report = Path(report)
        metrics_path = report / "metrics.json"
        if not metrics_path.is_file():
            raise FileNotFoundError(f"{metrics_path}: not found; run `worldmodel eval` first")
        evals = _commands(report)
        card["eval_command"] = evals[-1]["command"] if evals else None
        eval_data = None
        if evals:
            argv = evals[-1]["command"].split()
            eval_data = argv[argv.index("--data") + 1] if "--data" in argv else None
        card["held_out_record_command"] = _record_command(eval_data) if eval_data else None
        card["eval"] = json.loads(metrics_path.read_text())
    return card


def cards_table(root: str | os.PathLike = "checkpoints") -> str:
    """A markdown table of the shipped checkpoints' held-out metrics, read from their cards (the
    README carries this table; a test checks that they agree)."""
    rows = [
        "| world | trained | frame PSNR h=1 (copy-last) | h=16 (copy-last) | state R^2 h=1 / h=16 "
        "| onset F1 h<=8 | caption exact h=1 / h=8 | probe R^2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for card_path in sorted(Path(root).glob("*/card.json")):
        card = json.loads(card_path.read_text())
        ev = card.get("eval")
        if not ev:
            continue
        m, copy = ev["model"], ev["baselines"]["copy_last"]
        H = ev["horizons"]
        i1, i8, i16 = H.index(1), H.index(min(8, H[-1])), H.index(min(16, H[-1]))
        onset = float(np.mean(m["audio_onset_f1"][: i8 + 1]))
        rows.append(
            f"| {card['world']} | {card['train_minutes']} min, {card['train_steps']} steps "
            f"| {m['frame_psnr'][i1]:.1f} ({copy['frame_psnr'][i1]:.1f}) "
            f"| {m['frame_psnr'][i16]:.1f} ({copy['frame_psnr'][i16]:.1f}) "
            f"| {m['state_r2'][i1]:.2f} / {m['state_r2'][i16]:.2f} | {onset:.2f} "
            f"| {m['caption_exact'][i1]:.2f} / {m['caption_exact'][i8]:.2f} "
            f"| {ev['probe_r2']:.2f} |"
        )
    return "\n".join(rows)


def fresh(world_describe: dict[str, Any], mcfg: ModelConfig, seed: int = 0) -> Loaded:
    """An untrained model shaped for a world (benchmarks: speed does not depend on the weights)."""
    import dataclasses

    from worldmodel.train import model_config_for

    meta = world_describe
    mcfg = model_config_for(meta, mcfg)
    graphdef, params = nnx.split(new_model(mcfg, seed), nnx.Param)
    P = len(meta["proprio_names"])
    norm = Normalizer([0.0] * P, [1.0] * P, meta["action"]["low"], meta["action"]["high"])
    config = {
        "model": json.loads(json.dumps(dataclasses.asdict(mcfg))),
        "train": json.loads(json.dumps(dataclasses.asdict(TrainConfig()))),
        "normalizer": dataclasses.asdict(norm),
        "data": None,
        "world": meta["world"],
        "vocab": meta["caption"]["vocab"],
        "action": meta["action"],
        "proprio_names": meta["proprio_names"],
        "state_names": meta["state_names"],
    }
    return Loaded(graphdef, params, mcfg, norm, config)


def load_exported(folder: str | os.PathLike) -> Loaded:
    """An exported checkpoint; a missing, extra or mis-shaped tensor is named in the error."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    config = read_config(folder)
    mcfg = _dataclass_from(ModelConfig, config["model"])
    graphdef, abstract = _template(mcfg)
    expected = _flatten(jax.tree.map(lambda x: np.zeros((), x.dtype), nnx.to_pure_dict(abstract)))
    shapes = {
        k: v.shape
        for k, v in _flatten(
            jax.tree.map(lambda x: np.empty(x.shape, x.dtype), nnx.to_pure_dict(abstract))
        ).items()
    }
    path = folder / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    tensors = load_file(str(path))
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(
            f"{path}: tensors do not match the model in config.json; "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for k, v in tensors.items():
        if v.dtype == np.float16 and expected[k].dtype == np.float32:
            tensors[k] = v = v.astype(np.float32)  # stored in half precision (`export --half`)
        if v.shape != shapes[k] or v.dtype != expected[k].dtype:
            raise ValueError(
                f"{path}: tensor {k!r} is {v.dtype}{list(v.shape)}; the model "
                f"expects {expected[k].dtype}{list(shapes[k])}"
            )
    nested: dict = {}
    for k, v in tensors.items():
        node = nested
        *head, last = k.split("/")
        for part in head:
            node = node.setdefault(int(part) if part.isdigit() else part, {})
        node[int(last) if last.isdigit() else last] = jax.numpy.asarray(v)
    nnx.replace_by_pure_dict(abstract, nested)
    return Loaded(graphdef, abstract, mcfg, Normalizer(**config["normalizer"]), config)


def load(path: str | os.PathLike) -> Loaded:
    """A training run folder or an exported checkpoint folder, whichever `path` is."""
    path = Path(path)
    if (path / WEIGHTS).is_file():
        return load_exported(path)
    if (path / "ckpt").is_dir():
        return load_run(path)
    raise FileNotFoundError(
        f"{path}: neither an exported checkpoint ({WEIGHTS}) nor a training run (ckpt/)"
    )
