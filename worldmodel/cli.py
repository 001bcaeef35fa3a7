"""The `worldmodel` command line: the one module that reaches every package.

Commands import what they need when they run, so `worldmodel worlds` starts in a blink and a
recording worker never loads JAX.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def hardware() -> str:
    """This machine in a few words (for cards and run logs)."""
    import os
    import platform

    import jax

    kinds = sorted({d.device_kind for d in jax.devices()})
    return f"{os.cpu_count()}-core {platform.machine()} CPU; jax devices: {', '.join(kinds)}"


def log_command(folder: str, argv: Sequence[str] | None = None) -> None:
    """Append the command line that is writing `folder` to `folder/commands.jsonl` (a card needs
    to say how a checkpoint and its metrics were made)."""
    import shlex
    import time
    from pathlib import Path

    argv = list(sys.argv[1:] if argv is None else argv)
    entry = {
        "command": "worldmodel " + shlex.join(argv),
        "hardware": hardware(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / "commands.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def _cmd_worlds(args: argparse.Namespace) -> int:
    import sims

    for name in sims.WORLDS:
        world = sims.make(name)
        d = world.describe()
        world.close()
        print(f"{name}: {sims.WORLDS[name].__doc__.strip()}")
        bounds = ", ".join(
            f"{n} [{lo:g}, {hi:g}]"
            for n, lo, hi in zip(
                d["action"]["names"], d["action"]["low"], d["action"]["high"], strict=True
            )
        )
        print(f"  actions: {bounds}")
        keys = ", ".join(
            f"{k}: {d['action']['names'][i]} {'+' if s > 0 else '-'}"
            for k, (i, s) in d["keys"].items()
        )
        print(f"  keys:    {keys}")
        print(
            f"  sees {d['frame_shape'][0]}x{d['frame_shape'][1]} frames, hears "
            f"{d['audio']['samples_per_step']} samples/step at {d['audio']['sample_rate']} Hz, "
            f"reads {len(d['caption']['vocab'])} words; proprio {len(d['proprio_names'])}, "
            f"state {len(d['state_names'])}"
        )
    print("any MJCF file: --mjcf PATH (generic sound and captions; keys q/a, w/s, e/d, ...)")
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from worldmodel.record import RecordConfig, record

    cfg = RecordConfig(
        world=None if args.mjcf else args.world,
        mjcf=args.mjcf,
        episodes=args.episodes,
        steps=args.steps,
        policy=args.policy,
        workers=args.workers,
        seed=args.seed,
        size=args.size,
    )
    meta = record(cfg, args.out)
    steps = sum(e["length"] for e in meta["episodes"])
    print(f"wrote {len(meta['episodes'])} episodes, {steps} steps of {meta['world']} to {args.out}")
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from worldmodel.dataset import check

    summary = check(args.dir)
    print(
        f"{args.dir}: ok, {summary['episodes']} episodes, {summary['steps']} steps of "
        f"{summary['world']}, {100 * summary['captioned_fraction']:.0f}% of steps captioned"
    )
    print(f"  {'event':<8} {'steps':>6} {'audio dB':>9}")
    for kind, count in summary["caption_counts"].items():
        print(f"  {kind:<8} {count:>6} {summary['audio_energy_db'][kind]:>9.1f}")
    if args.json:
        print(json.dumps(summary))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from worldmodel.config import preset
    from worldmodel.train import train

    overrides = {
        k: v
        for k, v in (
            ("steps", args.steps),
            ("seed", args.seed),
            ("lr", args.lr),
            ("context", args.context),
            ("horizon", args.horizon),
            ("batch", args.batch),
        )
        if v is not None
    }
    if args.pure_jepa:
        overrides["heads_grad_to_latent"] = False
    for item in args.set or []:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"--set {item}: the value must be JSON (e.g. width=64)") from None
        if isinstance(overrides[key], list):
            overrides[key] = tuple(overrides[key])
    if args.coordinator:
        import jax

        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    mcfg, tcfg = preset(args.preset, **overrides)
    import jax

    if jax.process_index() == 0:
        log_command(args.out)
    last = train(args.data, args.out, mcfg, tcfg)
    print(json.dumps(last))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from worldmodel.checkpoint import export, model_card

    card = model_card(args.run, args.eval)
    path = export(args.run, args.out, card=card, half=args.half)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and config.json")
    return 0


def _cmd_cards(args: argparse.Namespace) -> int:
    from worldmodel.checkpoint import cards_table

    print(cards_table(args.root))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from worldmodel.checkpoint import load
    from worldmodel.eval import EvalConfig, evaluate, table

    loaded = load(args.ckpt)
    cfg = EvalConfig(context=args.context, horizon=args.horizon, episodes=args.episodes)
    metrics = evaluate(loaded, args.data, args.out, cfg, train_data=args.train_data)
    log_command(args.out)
    print(table(metrics))
    print(f"wrote {args.out}/metrics.json, frames.png, metrics.png, audio_*.wav, captions.txt")
    return 0


def shipped_checkpoint(world: str) -> str | None:
    """checkpoints/<world> in the working directory or beside the package, if it holds weights."""
    from pathlib import Path

    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / "checkpoints" / world / "model.safetensors").is_file():
            return str(root / "checkpoints" / world)
    return None


def _cmd_play(args: argparse.Namespace) -> int:
    import os

    if not args.headless and os.environ.get("DISPLAY") and "MUJOCO_GL" not in os.environ:
        # Beside an X11 window, MuJoCo renders through GLX: EGL and the window's context clash
        # (EGL_BAD_ACCESS under Xvfb).
        os.environ["MUJOCO_GL"] = "glx"
    import sims
    from viewer.app import PlayConfig, play

    if args.mjcf:
        worlds = ["mjcf"]
        ckpts = {"mjcf": args.ckpt}
    else:
        if args.world not in sims.WORLDS:
            raise ValueError(f"unknown world {args.world!r}; bundled: {', '.join(sims.WORLDS)}")
        worlds = [args.world] + [w for w in sims.WORLDS if w != args.world]
        ckpts = {w: shipped_checkpoint(w) for w in worlds}
        if args.ckpt:
            ckpts[args.world] = args.ckpt
    cfg = PlayConfig(
        worlds=worlds,
        ckpts=ckpts,
        mjcf=args.mjcf,
        size=args.size,
        fps=args.fps,
        seed=args.seed,
        horizon=args.horizon,
        headless=args.headless,
        script=args.script,
        steps=args.steps,
        record=args.record,
        profile=args.profile,
    )
    result = play(cfg)
    if args.profile and "median" in result:
        print(
            f"frame cost (model + decode + draw): median {result['median']:.2f} ms, "
            f"p99 {result['p99']:.2f} ms over {result['frames']} frames"
        )
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from worldmodel.agent import PlanRun, plan_report, table
    from worldmodel.checkpoint import load
    from worldmodel.plan import PlanConfig

    ckpt = args.ckpt or shipped_checkpoint(args.world)
    if ckpt is None:
        raise FileNotFoundError(
            f"no checkpoint for {args.world}: pass --ckpt RUN or ship checkpoints/{args.world}"
        )
    budget = ("method", "horizon", "samples", "iterations")
    plan = PlanConfig(**{k: getattr(args, k) for k in budget if getattr(args, k) is not None})
    run = PlanRun(
        world=args.world,
        goal=args.goal,
        episodes=args.episodes,
        steps=args.steps,
        seed=args.seed,
        oracle_episodes=args.oracle_episodes,
        memory=args.memory,
        plan=plan,
    )
    report = plan_report(load(ckpt), run, args.out)
    print(table(report))
    if args.out:
        print(f"wrote {args.out}/plan.json and plan.gif")
    return 0


def _cmd_rl(args: argparse.Namespace) -> int:
    from worldmodel.checkpoint import load
    from worldmodel.rl import PPOConfig, rl_report, table

    ckpt = args.ckpt or shipped_checkpoint(args.world)
    if ckpt is None:
        print(
            f"error: no checkpoint for {args.world}: pass --ckpt DIR or ship "
            f"checkpoints/{args.world}",
            file=sys.stderr,
        )
        return 2
    try:
        loaded = load(ckpt)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if loaded.config.get("world") != args.world:
        raise ValueError(
            f"rl: {ckpt} is a model of world {loaded.config.get('world')!r}, not {args.world!r}"
        )
    cfg = PPOConfig(num_envs=args.envs, iterations=args.iterations, seed=args.seed)
    every = max(1, cfg.iterations // 10)

    def log(i: int, row: dict[str, float]) -> None:
        if (i + 1) % every == 0 or i == 0:
            print(f"iteration {i + 1}/{cfg.iterations}: imagined reward {row['reward']:.4f}")

    report = rl_report(loaded, cfg, args.episodes, args.steps, args.eval_seed, args.out, log)
    print(table(report))
    if args.out:
        log_command(args.out)
        print(f"wrote {args.out}/rl.json")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from worldmodel.bench import bench, table

    result = bench(quick=args.quick, viewer_only=args.viewer)
    print(table(result))
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worldmodel", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("worlds", help="list bundled worlds with their actions and keys")
    s.set_defaults(func=_cmd_worlds)

    s = sub.add_parser("record", help="record rollouts into a dataset folder")
    src = s.add_mutually_exclusive_group()
    src.add_argument("--world", default="balls", help="bundled world (see `worldmodel worlds`)")
    src.add_argument("--mjcf", help="any MJCF file, as a generic world")
    s.add_argument("--episodes", type=int, default=8)
    s.add_argument("--steps", type=int, default=100, help="control steps per episode (at most)")
    s.add_argument("--policy", choices=["random", "scripted"], default="random")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    s.add_argument("--out", required=True, help="dataset folder to create")
    s.set_defaults(func=_cmd_record)

    s = sub.add_parser("train", help="train (or resume) a world model on a recorded dataset")
    s.add_argument("--data", required=True, help="dataset folder (worldmodel record)")
    s.add_argument("--val", help="held-out dataset folder (read by `worldmodel eval`)")
    s.add_argument("--out", required=True, help="run folder; resumes if it holds a checkpoint")
    s.add_argument("--preset", default="tiny", choices=["tiny", "small"])
    s.add_argument("--steps", type=int)
    s.add_argument("--seed", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--batch", type=int)
    s.add_argument("--context", type=int)
    s.add_argument("--horizon", type=int)
    s.add_argument("--pure-jepa", action="store_true", help="heads train on stop-gradient latents")
    s.add_argument(
        "--set",
        action="append",
        metavar="FIELD=JSON",
        help="override any model or train config field, e.g. --set width=64",
    )
    s.add_argument("--coordinator", help="HOST:PORT of process 0, for multi-host training")
    s.add_argument("--num-processes", type=int, default=1)
    s.add_argument("--process-id", type=int, default=0)
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser("eval", help="open-loop evaluation on held-out episodes, with baselines")
    s.add_argument("--ckpt", required=True, help="training run (or checkpoint) folder")
    s.add_argument("--data", required=True, help="held-out dataset folder")
    s.add_argument("--out", required=True, help="report folder")
    s.add_argument("--context", type=int, default=8)
    s.add_argument("--horizon", type=int, default=16)
    s.add_argument("--episodes", type=int, help="use at most this many held-out episodes")
    s.add_argument("--train-data", help="training dataset for the state probe (default: the run's)")
    s.set_defaults(func=_cmd_eval)

    s = sub.add_parser("play", help="the real-time window: steer the imagined world")
    s.add_argument("--world", default="balls", help="bundled world to open (Tab cycles the others)")
    s.add_argument("--mjcf", help="a user's MJCF file instead of a bundled world")
    s.add_argument("--ckpt", help="checkpoint or training run (default: checkpoints/<world>)")
    s.add_argument("--size", type=int, default=512, help="pixels of the main view")
    s.add_argument("--fps", type=float, default=20.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--horizon",
        type=int,
        default=16,
        help="imagined steps before re-grounding on the true simulator (0: pure dream; the "
        "models are trained 8 steps open loop and drift past a few dozen)",
    )
    s.add_argument("--headless", action="store_true", help="no window: dummy video and audio")
    s.add_argument("--script", help="scripted key events, one 'STEP KEY down|up' a line")
    s.add_argument("--steps", type=int, help="stop after this many frames")
    s.add_argument("--record", help="headless: write this MP4, plus a WAV and a PNG beside it")
    s.add_argument("--profile", action="store_true", help="print the per-frame cost")
    s.set_defaults(func=_cmd_play)

    s = sub.add_parser("plan", help="plan toward a goal in the model; compare oracle and random")
    s.add_argument("--world", default="reacher")
    s.add_argument("--ckpt", help="checkpoint or training run (default: checkpoints/<world>)")
    s.add_argument("--goal", choices=["reward", "frame", "caption"], default="reward")
    s.add_argument("--episodes", type=int, default=50)
    s.add_argument("--steps", type=int, default=50, help="control steps per episode")
    s.add_argument("--seed", type=int, default=1000, help="episode i uses world seed SEED + i")
    # The budget's defaults are PlanConfig's (worldmodel/plan.py), kept in one place.
    s.add_argument("--method", choices=["mppi", "cem"], help="default: PlanConfig's")
    s.add_argument("--horizon", type=int, help="planned steps (default: PlanConfig's)")
    s.add_argument(
        "--samples", type=int, help="action sequences per iteration (default: PlanConfig's)"
    )
    s.add_argument("--iterations", type=int, help="refinements per plan (default: PlanConfig's)")
    s.add_argument("--oracle-episodes", type=int, help="run the slow oracle on the first N only")
    s.add_argument(
        "--memory",
        type=int,
        default=0,
        help="rebuild the model's memory from the last N observed steps at each control step "
        "(default 0: one memory over the whole episode)",
    )
    s.add_argument("--out", help="folder for plan.json and plan.gif")
    s.set_defaults(func=_cmd_plan)

    s = sub.add_parser("rl", help="train a policy with PPO in imagination; score it in the sim")
    s.add_argument("--world", default="reacher")
    s.add_argument("--ckpt", help="checkpoint or training run (default: checkpoints/<world>)")
    s.add_argument("--iterations", type=int, default=100, help="PPO iterations")
    s.add_argument("--envs", type=int, default=256, help="vmapped imagined environments")
    s.add_argument("--seed", type=int, default=0, help="PPO seed (init, sampling, starts)")
    s.add_argument("--episodes", type=int, default=20, help="true-simulator episodes to score")
    s.add_argument("--steps", type=int, default=50, help="control steps per scored episode")
    s.add_argument(
        "--eval-seed", type=int, default=1000, help="scored episode i uses world seed SEED + i"
    )
    s.add_argument("--out", help="folder for rl.json")
    s.set_defaults(func=_cmd_rl)

    s = sub.add_parser("cards", help="the shipped checkpoints' metrics as a markdown table")
    s.add_argument("--root", default="checkpoints")
    s.set_defaults(func=_cmd_cards)

    s = sub.add_parser("export", help="export a training run as a shipped checkpoint")
    s.add_argument("run")
    s.add_argument("out")
    s.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    s.add_argument("--eval", help="a `worldmodel eval` report folder: its metrics go on the card")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("bench", help="speed, side by side with the simulator and the machine")
    s.add_argument("--quick", action="store_true", help="a smoke run: tiny model, few repeats")
    s.add_argument("--viewer", action="store_true", help="only the viewer's frame cost")
    s.add_argument("--out", help="write the results as JSON")
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser("data", help="dataset tools")
    data = s.add_subparsers(dest="data_command", required=True)
    c = data.add_parser("check", help="validate a dataset and summarise its events and sound")
    c.add_argument("dir")
    c.add_argument("--json", action="store_true", help="also print the summary as JSON")
    c.set_defaults(func=_cmd_data_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sims.world import WorldError
    from worldmodel.dataset import DatasetError

    errors: tuple[type[Exception], ...] = (WorldError, DatasetError, ValueError)
    if args.command in ("train", "eval", "export", "play"):
        from worldmodel.train import TrainingError

        errors += (TrainingError,)
    errors += (
        (FileNotFoundError, RuntimeError)
        if args.command in ("play", "eval", "export", "plan", "rl")
        else ()
    )
    try:
        return args.func(args)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
