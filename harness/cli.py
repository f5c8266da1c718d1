"""`python -m harness ...`: argument parsing and the one place errors become exit codes.

Exit status: 0 success; 2 bad input (one line on stderr, no traceback, before
any work); 1 a run that started and failed (recorded as FAILED in MLflow).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from harness.config import RunConfig
from harness.errors import ConfigError, HarnessError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_run_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, same name, help and default as the field."""
    for f in dataclasses.fields(RunConfig):
        flag = f"--{f.name}"
        help_ = f.metadata["help"]
        if f.type == "bool":
            p.add_argument(flag, action="store_true", help=help_)
        elif f.name == "data_root":
            p.add_argument(flag, default=None, metavar="DIR", help=help_)
        else:
            typ = {"int": int, "int | None": int, "float": float, "float | None": float}.get(f.type, str)
            p.add_argument(flag, type=typ, default=f.default, choices=f.metadata["choices"],
                           help=help_)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    values = {name: getattr(args, name) for name in RunConfig.field_names()}
    try:
        return RunConfig(**values)
    except ConfigError as e:
        raise HarnessError(f"invalid --{e.key}: {e.problem}") from None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole CLI; given `argv`, only the module of the command it names is imported (a bad flag of
    `train` is answered before torch, MLflow and Optuna load: seconds, not a tenth of one)."""
    p = _Parser(prog="harness", description="Ablation harness for speech emotion recognition (RAVDESS and other "
                                            "corpora: docs/corpora.md).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    from harness.corpora import ADAPTERS

    layouts = [n for n, a in ADAPTERS.items() if a.synth_path]
    s = sub.add_parser("synth", help="write a synthetic corpus in a corpus's layout (default: RAVDESS's)")
    s.add_argument("dir", type=Path, help="output folder (an empty or earlier synthetic one)")
    s.add_argument("--actors", type=int, default=8, help="number of actors (default: 8; RAVDESS has 24; a layout "
                                                         "keeps at most its corpus's speaker count)")
    s.add_argument("--seed", type=int, default=0, help="generator seed (default: 0); a new seed draws new speakers")
    s.add_argument("--layout", default="ravdess", choices=layouts, help="the corpus layout to write (default: ravdess)")
    s.add_argument("--sr", type=int, default=16000, help="sample rate of the WAVs (default: 16000)")

    t = sub.add_parser("train", help="one tracked training run (every flag of the seed's train.py)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_config_flags(t)
    t.add_argument("--experiment", default="harness", help="MLflow experiment name")
    t.add_argument("--tracking_uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    t.add_argument("--out", type=Path, default=Path("artifacts"), help="folder for best_model.pt and plots")
    s.set_defaults(func=cmd_synth)
    t.set_defaults(func=cmd_train)

    # Each later noun (suite, study, report) owns its sub-commands: `register(sub)`
    # adds its parsers with `set_defaults(func=...)`.
    import importlib
    command = next((a for a in (argv or ()) if not a.startswith("-")), None)
    if command in ("train", "synth"):
        return p
    for name, module in SUBCOMMAND_MODULES.items():
        if command in SUBCOMMAND_MODULES and name != command:
            continue
        importlib.import_module(f"harness.{module}").register(sub)
    return p


def cmd_synth(args: argparse.Namespace) -> int:
    from harness.train import synth

    if args.actors < 1 or args.actors > 99:
        raise HarnessError(f"invalid --actors: expected 1..99, got {args.actors}")
    if args.sr < 8000:
        raise HarnessError(f"invalid --sr: expected >= 8000 Hz, got {args.sr}")
    root = synth.generate_corpus(args.dir, n_actors=args.actors, seed=args.seed, sr=args.sr, progress=True,
                                 layout=args.layout)
    n = sum(1 for p in Path(args.dir).rglob("*.wav") if not p.name.startswith("."))
    print(f"wrote {n} clips of {args.actors} actor(s) in the {args.layout} layout to {args.dir}; read it with "
          f"--data_root {root} --corpus {args.layout}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)  # a bad flag is one line before the heavy imports below

    from harness import tracking
    from harness.errors import NonFiniteLossError
    from harness.train import data as train_data
    from harness.train import run as training

    tracking.check_tracking_uri(args.tracking_uri)  # a URI MLflow cannot use fails before the data work
    train_data.resolve_device(cfg.device)  # fail before the data work, not after
    # The protocol's folds from the data; a design the corpus cannot hold fails here, before any run.
    cfg = train_data.checked_config(cfg, train_data.scan_data(cfg))
    data = train_data.prepare(cfg.replace(fold=0) if cfg.cv_folds and cfg.fold is None else cfg, progress=True)

    def describe(data, what: str) -> None:
        s = data.split
        print(f"{what}: train {len(s.train)} / val {len(s.val)} / test {len(s.test)} clips"
              + (f" (test speakers {list(s.test_speakers)})" if s.test_speakers else ""), flush=True)

    print(f"data: {data.data_root} ({'synthetic: ' if data.synthetic else ''}{data.corpus.describe()}; classes "
          f"{', '.join(data.classes)}; fingerprint {data.corpus.fingerprint}); split {cfg.split}"
          + (f", {cfg.cv_folds}-fold cross-validation ({cfg.protocol})" if cfg.cv_folds else "")
          + (f", tested on {cfg.test_corpus}" if cfg.test_corpus else ""))
    if data.corpus.dropped:
        print(f"labels not shared by every corpus: {data.corpus.dropped}")

    def show(epoch: int, row: dict) -> None:
        step = f"C {row['C']:<7g}" if "C" in row else f"epoch {epoch:3d}/{cfg.epochs}"
        print(f"{step}  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
              f"val_f1_macro {row['val_f1_macro']:.4f}", flush=True)

    try:
        if cfg.cv_folds and cfg.fold is None:
            from harness.train import cv

            res = cv.run_repeat(cfg, experiment=args.experiment, tracking_uri=args.tracking_uri, out_dir=args.out,
                                on_fold=lambda f, d: describe(d, f"fold {f}/{cfg.cv_folds}"), on_epoch=show)
            for f, r in enumerate(res["folds"]):
                print(f"fold {f}: best epoch {r['best_epoch']}, test macro-F1 {r['test_f1_macro']:.4f}")
            print(f"repeat (seed {cfg.seed}): pooled test macro-F1 {res['test_f1_macro']:.4f} over "
                  f"{res['n_test_clips']} clips (every clip scored once), fold mean {res['test_f1_macro_fold_mean']:.4f}; "
                  f"MLflow run {res['run_id']} in experiment {args.experiment!r}")
            return 0
        describe(data, "split" if not cfg.cv_folds else f"fold {cfg.fold}/{cfg.cv_folds}")
        res = training.run(cfg, experiment=args.experiment, tracking_uri=args.tracking_uri,
                           out_dir=args.out, data=data, on_epoch=show)
    except NonFiniteLossError as e:
        print(f"harness train: run FAILED: {e} (recorded in MLflow)", file=sys.stderr)
        return 1
    chosen = f"C {res['classic_C']:g}" if "classic_C" in res else f"epoch {res['best_epoch']}"
    print(f"best {chosen} (val macro-F1 {res['best_val_f1_macro']:.4f}); "
          f"test macro-F1 {res['test_f1_macro']:.4f}, accuracy {res['test_accuracy']:.4f}")
    print(f"checkpoint: {args.out / 'best_model.pt'}; MLflow run {res['run_id']} in experiment {args.experiment!r}")
    return 0

SUBCOMMAND_MODULES: dict[str, str] = {"suite": "suite.runner", "report": "report.render", "study": "study.search",
                                      "predict": "predict.command", "register": "predict.registry"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as e:
        print(f"harness {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted", file=sys.stderr)
        return 130
