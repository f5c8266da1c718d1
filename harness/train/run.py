"""One training run: data -> features -> split -> train -> select on val -> score test once.

`prepare` turns a config into tensors (cached features, the split);
`fit` trains and selects the best epoch by validation macro-F1 only;
`run` wraps both in one tracked MLflow run and scores the test split once,
with the selected checkpoint.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from harness import metrics, tracking
from harness.config import CLASSIC_MODELS, RunConfig
from harness.errors import NonFiniteLossError
from harness.figures import confusion_png
from harness.train import classic, heads, normalize
from harness.train.splits import Split
from harness.train.data import Prepared, prepare, resolve_device
from harness.train.features import SpecAugment, mixup
from harness.train.losses import balanced_sampler, build_loss
from harness.train.models import build_model, layout_name, memory_format

DEFAULT_EXPERIMENT = "harness"
PREDICTIONS = "test_predictions.csv"  # every run's test predictions, one line per clip
EVAL_BATCH = 128


def train_seed(cfg: RunConfig) -> int:
    """The seed of a run's initialisation, batch order and augmentation: `cfg.seed`, or for fold k of a
    cross-validated repeat a seed of its own drawn from (seed, k). The split stays the repeat's (`cfg.seed`).

    Folds that shared the repeat's seed started from the same weights and drew the same batch orders, which
    tied their errors together: on synthetic populations of 24 and 10 speakers a repeat's pooled Δ spread
    2-7x (in 5 of 6 contrasts) what independent fold models would give (benchmarks/calibration/calibration.py), a
    variance the repeat shares and no estimator can see with 2 repeats. Independent fold models average
    out within the repeat."""
    if cfg.fold is None:
        return cfg.seed
    return int(np.random.SeedSequence([cfg.seed, cfg.fold]).generate_state(1)[0] >> 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


@dataclass
class FitResult:
    model: torch.nn.Module
    best_epoch: int
    best_val_f1: float
    norm: Any  # (mean, std): floats for log-mel, per-feature tensors for functionals, None for frames
    history: list[dict] = field(default_factory=list)
    checkpoint: Path | None = None


EpochCallback = Callable[[int, dict], None]


def fit(cfg: RunConfig, data: Prepared, out_dir: Path | None = None,
        on_epoch: EpochCallback | None = None, device: torch.device | None = None) -> FitResult:
    """Train `cfg.epochs` epochs; keep the weights of the best validation macro-F1."""
    device = device or resolve_device(cfg.device)
    seed = train_seed(cfg)
    seed_everything(seed)
    gen = torch.Generator().manual_seed(seed)
    n_classes = len(data.classes)
    tr, va = data.split.train, data.split.val
    y_np = data.labels.numpy()

    # Standardise with training statistics only (stored in the checkpoint), or by corpus / speaker with each
    # group's own (the checkpoint then stores none: a prediction computes its inputs' own).
    norm = heads.input_norm(data.features, tr, normalize.group_ids(data.corpus.clips, cfg.normalize))
    x_train = heads.model_inputs(data.features, tr, norm, device, frames=cfg.use_specaug or cfg.mixup_alpha > 0)
    y_train = data.labels[tr].to(device)
    x_val = heads.model_inputs(data.features, va, norm, device)
    y_val = data.labels[va].to(device)

    if cfg.model in CLASSIC_MODELS:  # fitted by scikit-learn, C chosen on validation: no epochs
        model, best_epoch, best_f1, history, shape = classic.fit(
            cfg.model, cfg.kernel, cfg.C, cfg.class_weight_loss, seed, n_classes, heads.head_shape(data.features),
            x_train, y_np[tr], x_val, y_np[va], on_epoch, device)
        return _fitted(cfg, data, model, {k: v.cpu() for k, v in model.state_dict().items()}, norm, shape,
                       best_epoch, best_f1, history, out_dir)

    fmt = memory_format(cfg.model, device.type)  # measured per model and device (harness.train.models)
    shape = heads.head_shape(data.features) if cfg.features != "logmel" else None
    model = _model(cfg, n_classes, shape).to(device).to(memory_format=fmt)
    criterion, _ = build_loss(cfg, y_np[tr], n_classes)
    criterion = criterion.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    specaug = None
    if cfg.use_specaug:  # on encoder frames: time and channel masks (heads.FrameMasks)
        specaug = (heads.FrameMasks if shape else SpecAugment)(cfg.specaug_freq, cfg.specaug_time).to(device)
    sampler = balanced_sampler(y_np[tr], gen) if cfg.balanced_sampler else None
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    best_f1, best_epoch, best_state = -1.0, 0, None
    history: list[dict] = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.tensor(list(sampler)) if sampler is not None else torch.randperm(len(tr), generator=gen)
        loss_sum, seen = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size].to(device)
            xb, yb = x_train[idx].contiguous(memory_format=fmt), y_train[idx]
            if specaug is not None:
                xb = specaug(xb)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                if cfg.mixup_alpha > 0:
                    xb, ya, yb2, lam = mixup(xb, yb, cfg.mixup_alpha, gen)
                    logits = model(xb)
                    loss = lam * criterion(logits, ya) + (1.0 - lam) * criterion(logits, yb2)
                else:
                    loss = criterion(model(xb), yb)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(f"loss became {value} at epoch {epoch}, batch {start // cfg.batch_size + 1}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += value * len(idx)
            seen += len(idx)

        val = evaluate(model, x_val, y_val, n_classes, criterion)
        row = {"train_loss": loss_sum / max(seen, 1), "val_loss": val["loss"],
               "val_f1_macro": val["f1_macro"], "val_accuracy": val["accuracy"]}
        history.append(row)
        if val["f1_macro"] > best_f1:  # strict: ties keep the earlier epoch
            best_f1, best_epoch = val["f1_macro"], epoch
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch, row)

    model.load_state_dict(best_state)
    return _fitted(cfg, data, model, best_state, norm, shape, best_epoch, best_f1, history, out_dir)


def _fitted(cfg: RunConfig, data: Prepared, model: torch.nn.Module, best_state: dict, norm, shape: dict | None,
            best_epoch: int, best_f1: float, history: list[dict], out_dir: Path | None) -> FitResult:
    """The selected model as a FitResult, saved as `best_model.pt` where `out_dir` is given."""
    ckpt = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt = out_dir / "best_model.pt"
        torch.save({"state_dict": best_state, "config": cfg.to_dict(), "classes": list(data.classes),
                    "norm": None if norm is None or isinstance(norm, normalize.GroupNorm) else list(norm),
                    "head_shape": shape,
                    "best_epoch": best_epoch, "val_f1_macro": best_f1}, ckpt)
    return FitResult(model=model, best_epoch=best_epoch, best_val_f1=best_f1, norm=norm,
                     history=history, checkpoint=ckpt)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)])


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int,
             criterion: torch.nn.Module | None = None) -> dict:
    logits = predict(model, x)
    pred = logits.argmax(1).cpu().numpy()
    true = y.cpu().numpy()
    labels = list(range(n_classes))
    m = metrics.confusion(true.tolist(), pred.tolist(), labels)
    got = metrics.scores_of(m)  # macro averages over the classes that occur
    out = {"f1_macro": got["f1_macro"], "pred": pred, "probs": torch.softmax(logits, 1).cpu().numpy(),
           "accuracy": got["wa"], "ua": got["ua"],
           "f1_per_class": metrics.f1_per_class(m).tolist(), "confusion": m.tolist()}
    if criterion is not None:
        with torch.no_grad():
            out["loss"] = float(criterion(logits, y))
    return out


def checkpoint_config(ckpt: dict) -> RunConfig:
    """The config a `best_model.pt` was trained with. One written before `--normalize` existed normalised with
    the training split's statistics: `train`, not today's `auto` (which is `speaker` across corpora)."""
    return RunConfig.from_dict({"normalize": "train", **ckpt["config"]})


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the selected model from `best_model.pt` (safe: weights_only=True)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    cfg = checkpoint_config(ckpt)
    model = _model(cfg, len(ckpt["classes"]), ckpt.get("head_shape"))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def _model(cfg: RunConfig, n_classes: int, head_shape: dict | None) -> torch.nn.Module:
    if cfg.model in CLASSIC_MODELS:
        return classic.build(cfg.model, cfg.kernel, n_classes, head_shape)
    if cfg.features != "logmel":
        return heads.build_head(cfg.model, n_classes, cfg.dropout, head_shape)
    return build_model(cfg.model, n_classes, cfg.dropout, cfg.use_bn)


def score_test(model: torch.nn.Module, data: Prepared, norm, device: torch.device) -> dict:
    te = data.split.test
    x = heads.model_inputs(data.features, te, norm, device)
    return evaluate(model, x, data.labels[te].to(device), len(data.classes))


def run(cfg: RunConfig, experiment: str = DEFAULT_EXPERIMENT, tracking_uri: str | None = None,
        out_dir: Path = Path("artifacts"), run_name: str | None = None, parent_run_id: str | None = None,
        extra_tags: dict | None = None, data: Prepared | None = None, cache_dir: Path | None = None,
        score_on_test: bool = True, on_epoch: EpochCallback | None = None, progress: bool = False,
        before_finish: Callable[[], None] | None = None, confusion_figure: bool = True) -> dict:
    """One tracked run. Returns the final metrics and the MLflow run id.

    `score_on_test=False` (studies) never touches the test split. `before_finish` runs when
    everything is logged, just before the run is marked FINISHED; an exception it raises ends the
    run as `tracking.tracked_run` says (a suite cell's lost claim: KILLED, a duplicate).
    `confusion_figure=False` (suite cells) logs the test confusion as numbers only (the tag
    `harness.test_confusion`): the report draws it once per row, and the PNG was a third of a cell's overhead.
    """
    if data is None:
        data = prepare(cfg, cache_dir, progress=progress)
    device = resolve_device(cfg.device)
    c = tracking.client(tracking_uri)
    exp_id = tracking.get_or_create_experiment(c, experiment)
    tags = {
        "harness.config_hash": cfg.config_hash,
        "harness.seed": str(cfg.seed),
        "harness.train_seed": str(train_seed(cfg)),
        "harness.data_fingerprint": data.corpus.fingerprint,
        "harness.data_root": str(data.data_root),
        "harness.data": data.kind,
        "harness.corpora": data.corpus.describe(),
        "harness.classes": ",".join(data.classes),
        **({"harness.labels_dropped": data.corpus.dropped} if data.corpus.dropped else {}),
        "harness.n_clips": str(len(data.corpus.clips)),
        "harness.split": f"cross-corpus (test: {cfg.test_corpus})" if cfg.test_corpus else
                         "declared (manifest)" if cfg.protocol == "declared" else cfg.split,
        "harness.split_actors": _actors_tag(data.split),
        **({"harness.fold": str(cfg.fold), "harness.cv_folds": str(cfg.cv_folds)} if cfg.cv_folds else {}),
        "harness.device": str(device),
        "harness.memory_format": layout_name(cfg.model, device.type),
        "harness.device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        # Which GPU of the machine: the process's CUDA_VISIBLE_DEVICES (a suite worker is pinned to one).
        **({"harness.cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "all")}
           if device.type == "cuda" else {}),
        # CPU kernels reduce in a thread-count-dependent order: same seed, same numbers only at the same count.
        "harness.torch_threads": str(torch.get_num_threads()),
        # corpus / speaker read the test side's unlabelled features: the report's header says so
        "harness.normalize": cfg.normalize,
        "harness.transductive": str(cfg.normalize in normalize.TRANSDUCTIVE).lower(),
        **data.frontend_tags,
        **(extra_tags or {}),
    }
    t0, cpu0 = time.time(), time.process_time()
    with tracking.tracked_run(c, exp_id, run_name or f"{cfg.model}-seed{cfg.seed}", tags, parent_run_id) as run_id:
        tracking.log_params(c, run_id, cfg.to_params())

        def log_epoch(epoch: int, row: dict) -> None:
            tracking.log_metrics(c, run_id, row, step=epoch)
            if on_epoch is not None:
                on_epoch(epoch, row)

        out_dir = Path(out_dir)
        result = fit(cfg, data, out_dir, on_epoch=log_epoch, device=device)
        # The clip counts give the report its correction for overlapping training sets (n_test / n_train).
        final = {"best_epoch": result.best_epoch, "best_val_f1_macro": result.best_val_f1,
                 "n_train_clips": len(data.split.train), "n_val_clips": len(data.split.val),
                 "n_test_clips": len(data.split.test),
                 "epochs_run": len(result.history), "wall_time_s": time.time() - t0}
        if score_on_test:
            test = score_test(result.model, data, result.norm, device)
            final.update(test_f1_macro=test["f1_macro"], test_accuracy=test["accuracy"], test_ua=test["ua"],
                         test_wa=test["accuracy"])
            final.update({f"test_f1_{name}": v for name, v in zip(data.classes, test["f1_per_class"])})
            if confusion_figure:
                png = confusion_png(test["confusion"], data.classes, out_dir / "confusion_matrix.png",
                                    f"test, {cfg.model}, seed {cfg.seed}: macro-F1 {test['f1_macro']:.3f}")
                c.log_artifact(run_id, str(png))
            c.log_artifact(run_id, str(write_predictions(data, test, out_dir / PREDICTIONS)))
        final["wall_time_s"] = time.time() - t0
        # CPU-seconds of this process (all its threads): with wall_time_s, how much of the machine the run got.
        final["cpu_time_s"] = time.process_time() - cpu0
        if cfg.model in CLASSIC_MODELS:  # the C chosen on validation (or given)
            final["classic_C"] = result.history[result.best_epoch - 1]["C"]
        tracking.log_metrics(c, run_id, final, tags={"harness.test_confusion": str(test["confusion"])}
                             if score_on_test else None)
        weights = getattr(result.model, "layer_weights", lambda: None)()
        if weights is not None:  # the learned mix of the encoder's layers (SUPERB), layer 1 first
            tracking.set_tags(c, run_id, {"harness.layer_weights": " ".join(f"{w:.3f}" for w in weights.tolist())})
        c.log_artifact(run_id, str(result.checkpoint))
        if before_finish is not None:
            before_finish()
    return {"run_id": run_id, **final, "history": result.history}


def write_predictions(data: Prepared, test: dict, path: Path) -> Path:
    """The test split's predictions: clip (relative to its corpus root), speaker (namespaced by corpus), true and
    predicted class, one probability per class; what the report pools across folds."""
    import csv

    clips = [data.corpus.clips[i] for i in data.split.test]
    true = data.labels[data.split.test].numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["clip", "speaker", "true", "pred", *(f"prob_{c}" for c in data.classes)])
        for clip, t, p, probs in zip(clips, true, test["pred"], test["probs"]):
            w.writerow([clip.relpath, clip.speaker, data.classes[t], data.classes[p], *(f"{q:.6f}" for q in probs)])
    return path


def _actors_tag(split: Split) -> str:
    if not split.train_speakers:
        return "random clip split"
    return f"train={list(split.train_speakers)} val={list(split.val_speakers)} test={list(split.test_speakers)}"
