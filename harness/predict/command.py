"""`harness predict`: a run's or a row's models on new audio (a CSV of predictions), or on a labelled corpus
(scored, and logged as an MLflow run of kind evaluation). No retraining: the front-end, its settings, the
standardisation and the label set come from each run's checkpoint.

Every bad input is one line and exit 2 before any audio is read, with nothing created.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import HarnessError

DEFAULT_OUT = Path("predictions.csv")


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict new audio with a run's or a suite row's models, or score a "
                                       "labelled corpus with them (no retraining)")
    p.add_argument("input", nargs="?", type=Path, help="a .wav file, a folder of them (searched recursively) or a "
                                                       "manifest .csv with a column path (and optionally speaker)")
    p.add_argument("--run", metavar="RUN_ID", help="one training run's model")
    p.add_argument("--experiment", metavar="NAME", help="with --row: the suite's MLflow experiment")
    p.add_argument("--row", metavar="ROW", help="a suite row: every counted run's model (the fold models of every "
                                                "repeat, or the seeds of a split design), probabilities averaged")
    p.add_argument("--data_root", metavar="DIR", help="instead of INPUT: a labelled corpus to score (its labels "
                                                      "mapped onto the model's), logged as an MLflow run")
    p.add_argument("--corpus", default="auto", help="with --data_root: its adapter (default: auto, from the layout)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="FILE",
                   help=f"the predictions CSV (default: {DEFAULT_OUT})")
    p.add_argument("--encoder_checkpoint", metavar="PATH", help="an encoder row's weights, where the path its "
                                                                "runs recorded does not hold them on this machine")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto")
    p.add_argument("--tracking_uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_predict)


def check_args(args: argparse.Namespace) -> None:
    """The flags alone, before the tracking store is opened."""
    from harness import tracking
    from harness.predict.inputs import check_path

    if args.run and (args.experiment or args.row):
        raise HarnessError("--run names one run; --experiment and --row name a row: give one or the other")
    if not args.run and not (args.experiment and args.row):
        raise HarnessError("no model: give --run RUN_ID, or --experiment NAME --row ROW")
    if (args.input is None) == (args.data_root is None):
        raise HarnessError("give INPUT (a .wav, a folder or a manifest .csv) to predict, or --data_root DIR to score "
                           "a labelled corpus, not both")
    if args.input is not None:
        if args.corpus != "auto":
            raise HarnessError("--corpus goes with --data_root (a labelled corpus), not with INPUT")
        check_path(args.input)
    elif not Path(args.data_root).expanduser().exists():
        raise HarnessError(f"--data_root {args.data_root!r} does not exist: expected a corpus folder (or a .csv "
                           f"manifest)")
    if args.out.is_dir():
        raise HarnessError(f"--out {args.out}: is a folder; expected a .csv file name")
    tracking.check_location(args.out.absolute().parent, f"--out {args.out}")


def cmd_predict(args: argparse.Namespace) -> int:
    check_args(args)
    import tempfile

    from harness import services
    from harness.predict import scoring, sources
    from harness.train.data import default_cache_dir, resolve_device

    c = services.existing_client(args.tracking_uri)  # a store that is not there: one line, nothing created
    source = sources.from_run(c, args.run) if args.run else sources.from_row(c, args.experiment, args.row)
    device = resolve_device(args.device)
    cache_dir = default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="harness-predict-") as tmp:
        ens = scoring.load(sources.download(c, source, Path(tmp)), source.run_ids, device)
        ens.cfg = checked_weights(ens.cfg, source, args.encoder_checkpoint, cache_dir)
        inputs = read_inputs(args, ens)
        scoring.check_groups(ens.cfg, inputs.corpus.clips, str(args.input or f"--data_root {args.data_root}"))
        print(f"predicting with {source.describe()}; {scoring.describe_norm(ens.cfg)}", file=sys.stderr)
        for line in inputs.skipped:
            print(f"skipped: {line}", file=sys.stderr)
        mean, pred, spread = scoring.predict_corpus(ens, inputs.corpus, cache_dir, device, progress=True)
        paths = [str(clip.path) for clip in inputs.corpus.clips]
        table = scoring.frame(paths, ens.classes, mean, pred, spread, with_spread=bool(source.row))
        if inputs.truth:
            table.insert(1, "true", list(inputs.truth))
            return _evaluate(c, args, source, inputs, table, ens.classes, Path(tmp))
        write(table, args.out)
    counts = table["label"].value_counts()
    print(f"wrote {args.out}: {len(table)} clip(s) ({', '.join(f'{k} {v}' for k, v in counts.items())})"
          + (f"; {len(inputs.skipped)} unreadable clip(s) skipped" if inputs.skipped else ""))
    return 0


def read_inputs(args: argparse.Namespace, ens):
    from harness.predict import inputs

    if args.input is not None:
        return inputs.collect(args.input)
    return inputs.labelled(args.data_root, args.corpus, ens.classes, ens.cfg.mode, ens.cfg.label_mapping)


def checked_weights(cfg, source, override: str | None, cache_dir: Path):
    """An encoder's weights: found (the recorded path, or --encoder_checkpoint) and the very ones the runs
    trained on (their SHA-256, tag harness.encoder_sha256); one line otherwise."""
    from harness.config import FUNCTIONALS

    if cfg.features == "logmel" or cfg.features in FUNCTIONALS:
        if override:
            raise HarnessError(f"--encoder_checkpoint: {source.describe()} reads --features {cfg.features}, "
                               f"no encoder")
        return cfg
    from harness.train.frontends import check_weights, ssl, store

    cfg = cfg.replace(encoder_checkpoint=override) if override else cfg
    check_weights(cfg)
    want = source.tags.get("harness.encoder_sha256")
    got = store.sha256_file(ssl.locate_weights(cfg.features, cfg.encoder_checkpoint), cache_dir)
    if want and got != want:
        raise HarnessError(f"the weights of {cfg.features} found here (SHA-256 {got[:12]}...) are not those the "
                           f"runs trained on ({want[:12]}...): pass the right file with --encoder_checkpoint")
    return cfg


def write(table, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.6f")


def _evaluate(c, args, source, inputs, table, classes, tmp: Path) -> int:
    from harness.predict import evaluation

    result = evaluation.scores(table["true"], table["label"], classes)
    write(table, args.out)
    run_id = evaluation.log_run(c, source, inputs, table, result, classes, tmp)
    m = result["metrics"]
    corpus = inputs.corpus
    print(f"scored {corpus.name} at {corpus.root}: {m['n_test_clips']} clip(s)"
          + (f" ({inputs.dropped})" if inputs.dropped else "")
          + (f"; {len(inputs.skipped)} unreadable clip(s) skipped" if inputs.skipped else ""))
    print(f"test macro-F1 {m['test_f1_macro']:.4f}, UA {m['test_ua']:.4f}, WA {m['test_wa']:.4f} over classes "
          f"{', '.join(classes)}; predictions in {args.out}; MLflow run {run_id} (kind evaluation) in experiment "
          f"{source.experiment!r}")
    return 0
