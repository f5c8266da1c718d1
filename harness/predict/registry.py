"""`harness register`: a suite row's models as one MLflow pyfunc model, registered as
`harness-<experiment>-<row>`, described by the row's answer and the suite's settings.

The model is logged in a run of kind `model` in the suite's experiment (linked to the row's runs by tags);
each `register` adds a version. Rows, not cells, are registered: a cell's own cost stays a training run's.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path


KIND = "model"


def model_name(experiment: str, row: str) -> str:
    """`harness-<experiment>-<row>`, with anything but letters, digits, '.', '_' and '-' made '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"harness-{experiment}-{row}")


def register(sub) -> None:
    p = sub.add_parser("register", help="log a suite row's models as an MLflow pyfunc model and register it "
                                        "(harness-<experiment>-<row>)")
    p.add_argument("--experiment", metavar="NAME", required=True, help="the suite's MLflow experiment")
    p.add_argument("--row", metavar="ROW", required=True, help="the row whose counted runs' models to register")
    p.add_argument("--encoder_checkpoint", metavar="PATH", help="an encoder row's weights, where the path its "
                                                                "runs recorded does not hold them on this machine")
    p.add_argument("--tracking_uri", metavar="URI",
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    p.set_defaults(func=cmd_register)


def cmd_register(args: argparse.Namespace) -> int:
    from harness import services, tracking
    from harness.predict import sources

    c = services.existing_client(args.tracking_uri)
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    source = sources.from_row(c, args.experiment, args.row)
    name, version, run_id = register_row(c, uri, source, args.encoder_checkpoint)
    print(f"registered {source.describe()}", file=sys.stderr)
    print(f"registered {name} version {version} (logged in run {run_id}, kind {KIND}, experiment "
          f"{source.experiment!r}); load it with mlflow.pyfunc.load_model('models:/{name}/{version}'), serve it "
          f"with: MLFLOW_TRACKING_URI={tracking.redact(uri)} mlflow models serve -m models:/{name}/{version} "
          f"--env-manager local -p 5001 (docs/predict.md)")
    return 0


def register_row(c, uri: str, source, encoder_checkpoint: str | None = None) -> tuple[str, str, str]:
    """(registered name, version, the logging run's id)."""
    import tempfile
    from importlib import metadata

    import mlflow
    import torch

    import harness
    from harness import tracking
    from harness.predict import scoring, sources
    from harness.predict.command import checked_weights
    from harness.train.data import default_cache_dir

    with quiet():  # MLflow advises on type hints when the class is defined
        from harness.predict import pyfunc

    name = model_name(source.experiment, source.row)
    with tempfile.TemporaryDirectory(prefix="harness-register-") as tmp:
        paths = sources.download(c, source, Path(tmp))
        ens = scoring.load(paths, source.run_ids, torch.device("cpu"))
        cfg = checked_weights(ens.cfg, source, encoder_checkpoint, default_cache_dir())
        meta = {"experiment": source.experiment, "row": source.row, "design": source.design,
                "run_ids": list(source.run_ids), "n_models": len(paths), "classes": list(ens.classes)}
        (Path(tmp) / pyfunc.SOURCE_FILE).write_text(json.dumps(meta, indent=1))
        artifacts = {pyfunc.SOURCE_FILE: str(Path(tmp) / pyfunc.SOURCE_FILE),
                     **{f"model_{i}": str(p) for i, p in enumerate(paths)}}
        if cfg.encoder_checkpoint is not None or cfg.features not in ("logmel", "egemaps", "compare"):
            from harness.train.frontends import ssl

            artifacts["encoder"] = str(ssl.locate_weights(cfg.features, cfg.encoder_checkpoint))
        requirements = []
        for pkg in ("mlflow", "torch", "torchaudio", "numpy", "pandas", "soundfile",
                    *(("opensmile",) if cfg.features in ("egemaps", "compare") else ())):
            try:
                requirements.append(f"{pkg}=={metadata.version(pkg)}")
            except metadata.PackageNotFoundError:
                requirements.append(pkg)
        tags = {"harness.kind": KIND, "harness.source_runs": ",".join(source.run_ids),
                "harness.source_design": source.design, "harness.source_row": source.row,
                "harness.source_row_run": source.parent_run_id, "harness.registered_model": name,
                "harness.classes": ",".join(ens.classes)}
        mlflow.set_tracking_uri(uri)
        with tracking.tracked_run(c, source.experiment_id, f"model-{source.row}", tags) as run_id, \
                mlflow.start_run(run_id=run_id), quiet():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=pyfunc.HarnessModel(), artifacts=artifacts,
                code_paths=[str(Path(harness.__file__).parent)], signature=pyfunc.signature(ens.classes),
                pip_requirements=requirements, registered_model_name=name, metadata=meta)
    version = str(info.registered_model_version)
    text = description(c, source, meta)
    c.update_registered_model(name, description=text)
    c.update_model_version(name, version, description=text)
    return name, version, run_id


@contextmanager
def quiet():
    """MLflow's advice on logging (type hints, an input example, models from code) is not the user's to act on:
    the signature is given, and the class travels with the harness code."""
    import logging
    import warnings

    log = logging.getLogger("mlflow.pyfunc")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        log.setLevel(level)


def description(c, source, meta: dict) -> str:
    """The row's answer (its parent run's note and decision, as the report published them) and the suite's
    settings (the row's config where it differs from the defaults)."""
    from harness.config import RunConfig

    parent = c.get_run(source.parent_run_id)
    tags, params = parent.data.tags, parent.data.params
    defaults = RunConfig().to_params()
    settings = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if defaults.get(k, v) != v)
    lines = [f"Row `{source.row}` of suite `{tags.get('harness.suite', '?')}` (profile "
             f"`{tags.get('harness.profile', '?')}`), MLflow experiment `{source.experiment}`"
             + (f": {tags['harness.note']}" if tags.get("harness.note") else "."),
             f"Decision: {tags.get('harness.decision', 'not published yet (run `harness report`)')}."]
    if tags.get("mlflow.note.content"):
        lines.append(tags["mlflow.note.content"])
    lines += [f"Models: {source.design}; classes {', '.join(meta['classes'])}; runs {', '.join(source.run_ids)}.",
              f"Settings (differing from the defaults): {settings or 'none'}.",
              "Input: a table with a column `path` (an audio file), or columns `audio` (mono samples) and "
              "`sample_rate`. Output: `label`, `prob_<class>` per class, `spread` (standard deviation over the "
              "models of the predicted class's probability). See docs/predict.md."]
    return "\n\n".join(lines)
