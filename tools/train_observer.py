"""Train an RNN observer on simulated chain motion, export it to ONNX with its model card.

Usage (from the repository root)::

    python tools/train_observer.py train --problem arm3-sparse --run-dir /tmp/imuflow-train/arm3
    python tools/train_observer.py train --run-dir /tmp/imuflow-train/arm3 --resume
    python tools/train_observer.py export --run-dir /tmp/imuflow-train/arm3 --out models/arm3-sparse
    python tools/train_observer.py heldout --problem arm3-sparse --out /tmp/heldout.npz
    python tools/train_observer.py compare RUN_A RUN_B --out /tmp/compare.png

See docs/training.md for the recipe, the loss options and how the held-out figures are made.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.training_extra import TRAIN_EXTRA, torch_missing


def _train_args(p: argparse.ArgumentParser) -> None:
    from tools.training.losses import LOSS_KINDS
    from tools.training.trainer import TrainConfig

    d = TrainConfig()
    p.add_argument("--run-dir", type=Path, required=True, help="checkpoints, log.jsonl, curves.png")
    p.add_argument("--resume", action="store_true", help="continue from run-dir/checkpoint.pt "
                   "(its stored config wins over the options given)")
    p.add_argument("--max-minutes", type=float, default=math.inf, help="stop after this many minutes")
    for f in dataclasses.fields(TrainConfig):
        default = getattr(d, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default,
                           help=f"(default {default})")
        elif f.name == "loss":
            p.add_argument(flag, choices=LOSS_KINDS, default=default, help="error scaling (default plain)")
        else:
            p.add_argument(flag, type=type(default), default=default, help=f"(default {default})")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--checkpoint", default="best.pt", help="file in run-dir (default best.pt)")
    p.add_argument("--out", type=Path, required=True, help="output stem, e.g. models/arm3-sparse")
    p.add_argument("--heldout-sequences", type=int, default=32)
    p.add_argument("--heldout-s", type=float, default=60.0)
    p.add_argument("--max-minutes", type=float, help="the run's time budget, for the card's "
                   "command line (only needed for checkpoints that do not store it)")
    p.add_argument("--stress-sequences", type=int, default=0, help="also score the model on "
                   "this many stress sequences and the constraint observer on the held-out and "
                   "stress sets (card sections stress, baselines; default 0: not done)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``train``, ``export``, ``compare``, ``heldout`` (the last two: no torch)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    no_torch = torch_missing()  # train and export need it; heldout and compare do not
    if no_torch is None:
        _train_args(sub.add_parser("train", help="train (or resume) a run"))
        _export_args(sub.add_parser("export", help="export a checkpoint to ONNX + model card"))
    else:
        for name in ("train", "export"):
            sub.add_parser(name, help=f"(needs PyTorch: {TRAIN_EXTRA})")
    c = sub.add_parser("compare", help="plot the curves of several runs side by side")
    c.add_argument("runs", type=Path, nargs="+", help="run dirs")
    c.add_argument("--out", type=Path, required=True, help="PNG file")
    h = sub.add_parser("heldout", help="generate a held-out set (seeds from 1_000_000) as npz")
    h.add_argument("--problem", required=True)
    h.add_argument("--sequences", type=int, default=32)
    h.add_argument("--duration-s", type=float, default=60.0)
    h.add_argument("--no-noise", action="store_true", help="ideal sensors")
    h.add_argument("--stress", action="store_true", help="the stress set: settings training "
                   "never uses (tools/training/problem.py Problem.stress_settings), seeds from "
                   "2_000_000")
    h.add_argument("--out", type=Path, required=True)
    args, unknown = ap.parse_known_args(argv)
    if unknown and not (no_torch and args.cmd in ("train", "export")):
        ap.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if no_torch is not None and args.cmd in ("train", "export"):
        print(f"train_observer.py {args.cmd} needs PyTorch: {no_torch}", file=sys.stderr)
        return 2
    if args.cmd == "train":
        from tools.training.trainer import TrainConfig, Trainer

        cfg_file = args.run_dir / "config.json"
        if args.resume and cfg_file.exists():
            cfg = TrainConfig(**json.loads(cfg_file.read_text()))
        else:
            cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
        Trainer(cfg, args.run_dir, resume=args.resume).train(args.max_minutes)
        return 0
    if args.cmd == "compare":
        from tools.training.compare import compare_runs

        print(compare_runs(args.runs, args.out))
        return 0
    if args.cmd == "heldout":
        import numpy as np

        from tools.training.data import SEEDS, generate
        from tools.training.problem import get_problem

        kind = "stress" if args.stress else "heldout"
        seeds = np.arange(SEEDS[kind], SEEDS[kind] + args.sequences)
        generate(get_problem(args.problem), seeds, args.duration_s,
                 noisy=not args.no_noise, stress=args.stress).save(args.out)
        return 0
    from tools.training.export import add_stress_and_baseline, export_run
    card = export_run(args.run_dir, args.run_dir / args.checkpoint, args.out,
                      args.heldout_sequences, args.heldout_s, max_minutes=args.max_minutes)
    if args.stress_sequences:
        data_dir = json.loads((args.run_dir / "config.json").read_text())["data_dir"]
        add_stress_and_baseline(card.path, args.stress_sequences, args.heldout_s,
                                data_dir=Path(data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
