"""The run configuration: the one source of truth for what a training run does.

A `RunConfig` is built from CLI flags (`harness train`), a suite row or a study
trial, validated once in `__post_init__`, logged whole to MLflow as params and
hashed (`config_hash`) so a suite can tell a finished cell from a changed one.
The CLI flags are generated from these fields, so a flag cannot exist without
being validated, logged and hashed.

Defaults follow the seed's train.py (`shared/seed/f1-macro-improvements.md`).
Every improvement is opt-in. The seed contradicts itself on dropout/BatchNorm
("default: 0.3, BatchNorm enabled by default" vs. its Important Notes
"BatchNorm and Dropout are disabled by default"); the Important Notes win:
`dropout=0.0`, `use_bn=False`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from harness.errors import ConfigError

MODES = ("sentiment", "emotion")
MODELS = ("resnet18", "smallcnn", "linear", "mlp", "logreg", "svm")
# --- front-ends (issue 24) ---
# log-mel feeds the CNNs; every other front-end feeds a head (harness.train.heads).
FEATURES = ("logmel", "egemaps", "compare", "wav2vec2_base", "wav2vec2_large", "hubert_base", "hubert_large",
            "wavlm_base", "wavlm_base_plus", "wavlm_large")
CNN_MODELS = ("resnet18", "smallcnn")
HEAD_MODELS = ("linear", "mlp")
# scikit-learn's classic models on one vector per clip (functionals, or an encoder's pooled layers): fitted to
# convergence, C chosen on the validation speakers (harness.train.classic).
CLASSIC_MODELS = ("logreg", "svm")
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # C is chosen from these on the validation speakers unless --C is given
KERNELS = ("linear", "rbf")
# Feature normalisation (issue 39): the training split's statistics, or each corpus / speaker z-scored by its own
# (transductive: the test side's unlabelled features are used). `auto` resolves by design (`default_normalize`).
NORMALIZATIONS = ("train", "corpus", "speaker")
# Switches of gradient training that change what a classic model is: an error with logreg / svm.
NOT_CLASSIC = ("use_specaug", "mixup_alpha", "focal_loss", "label_smoothing", "balanced_sampler", "dropout", "use_bn")
FUNCTIONALS = ("egemaps", "compare")  # one vector per clip: no frames to mask, no layers
# Settings of the log-mel front-end only: another front-end rejects a non-default value.
LOGMEL_FIELDS = ("sr", "n_mels", "n_fft", "hop_length")
SPLITS = ("actor", "random")
PROTOCOLS = ("kfold", "emobox", "leave_one_speaker_out", "leave_one_session_out", "leave_one_corpus_out", "declared")
EMOBOX_FOLDS = 6
DEVICES = ("auto", "cpu", "cuda")


def _f(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class RunConfig:
    # --- data -------------------------------------------------------------
    data_root: str | None = _f(None, "the corpus folder (or a .csv manifest); several corpora: their folders joined "
                                     "by ','; omitted: the cached synthetic corpus (RAVDESS layout)")
    corpus: str = _f("auto", "the corpus adapter of each --data_root, comma-separated: auto (from the layout), "
                             "ravdess, cremad, emodb, savee, tess, iemocap, turev or manifest (docs/corpora.md)")
    mode: str = _f("sentiment", "sentiment: neutral/positive/negative; emotion: the corpus's own classes (the shared "
                                "ones over several corpora)", MODES)
    labels: str = _f("", "keep only these emotions, comma-separated (e.g. angry,calm,happy,sad); '' = every label "
                         "the corpora share")
    label_map: str = _f("", "rename labels before they are shared, e.g. calm=neutral,boredom=neutral")
    protocol: str = _f("kfold", "with --cv_folds: kfold (the seed's gender-balanced deal into K folds), emobox "
                                "(EmoBox's published folds), leave_one_speaker_out, leave_one_session_out, "
                                "leave_one_corpus_out (the data sets K; --cv_folds may be left out); declared: the "
                                "split a manifest's `split` column declares", PROTOCOLS)
    test_corpus: str | None = _f(None, "cross-corpus: test on every clip of this corpus, train and validate on the "
                                       "others (one split per seed)")
    split: str = _f("actor", "actor: speaker-independent actor-disjoint split; random: the seed's stratified clip split", SPLITS)
    train_ratio: float = _f(0.8, "share of actors (or clips with --split random) for training; no meaning with "
                                 "--cv_folds (the folds choose the test actors): leave it at 0.8 there")
    val_ratio: float = _f(0.1, "share for validation (model selection); the rest is the test set")
    cv_folds: int = _f(0, "speaker-grouped cross-validation: deal the actors into K gender-balanced folds, each "
                          "tested once per seed (K = number of actors: leave-one-speaker-out); 0 = one split")
    fold: int | None = _f(None, "with --cv_folds: run this fold only (0..K-1); omitted: every fold, as one repeat")
    seed: int = _f(0, "seeds the split, initialisation, sampling and augmentation")
    # --- features ---------------------------------------------------------
    sr: int = _f(22050, "sample rate audio is resampled to")
    n_mels: int = _f(128, "mel bands")
    n_fft: int = _f(1024, "FFT size")
    hop_length: int = _f(512, "STFT hop in samples")
    features: str = _f("logmel", "front-end: logmel (for the CNNs); egemaps / compare (openSMILE functionals); "
                                 "a frozen self-supervised encoder (torchaudio's bundle of that name); all but "
                                 "logmel train --model linear or mlp", FEATURES)
    normalize: str = _f("auto", "feature normalisation: train (the training split's statistics), corpus (each corpus "
                                "z-scored by its own clips), speaker (each speaker by their own clips); corpus and "
                                "speaker use the test side's unlabelled features (transductive); auto: train on one "
                                "corpus, speaker across corpora (docs/runs.md, Normalisation)",
                        ("auto",) + NORMALIZATIONS)
    layer: int | None = _f(None, "with an encoder: train on its transformer layer N (1..L) only; omitted: a "
                                 "learned weighted sum over all its layers (SUPERB)")
    encoder_checkpoint: str | None = _f(None, "with an encoder: its weights from this file (torchaudio's .pth, or "
                                              "a {'params', 'state_dict'} checkpoint) instead of torchaudio's "
                                              "download cache under TORCH_HOME")
    # --- model ------------------------------------------------------------
    model: str = _f("smallcnn", "classifier: resnet18 (1 input channel) or SmallCNN on log-mel; linear or mlp "
                                "(statistics pooling over frames, 256 hidden, dropout) on another front-end; logreg "
                                "(L2 logistic regression) or svm (--kernel) from scikit-learn on another front-end",
                    MODELS)
    C: float | None = _f(None, "logreg / svm: inverse regularisation strength; omitted: chosen on the validation "
                               "speakers from " + ", ".join(f"{c:g}" for c in C_GRID))
    kernel: str = _f("linear", "svm: linear (a linear SVM, one-vs-rest) or rbf (SVC, gamma 'scale')", KERNELS)
    dropout: float = _f(0.0, "dropout before the classifier (SmallCNN only; 0 = off)")
    use_bn: bool = _f(False, "BatchNorm after each conv of SmallCNN (resnet18 always has BN)")
    # --- loss and sampling --------------------------------------------------
    class_weight_loss: bool = _f(False, "class weights from the training split, normalised to mean 1 and clipped")
    focal_loss: bool = _f(False, "focal loss (uses the class weights, as in the seed)")
    focal_gamma: float = _f(2.0, "focal loss focusing parameter (>= 0; 0 = weighted cross-entropy)")
    label_smoothing: float = _f(0.0, "label smoothing in [0, 1)")
    balanced_sampler: bool = _f(False, "draw training batches with a class-balanced WeightedRandomSampler")
    # --- augmentation -------------------------------------------------------
    use_specaug: bool = _f(False, "SpecAugment (one frequency and one time mask) on training batches only")
    specaug_freq: int = _f(8, "SpecAugment max frequency-mask width (mel bins)")
    specaug_time: int = _f(20, "SpecAugment max time-mask width (frames)")
    mixup_alpha: float = _f(0.0, "mixup Beta(alpha, alpha) on training batches; 0 = off")
    # --- optimisation ---------------------------------------------------------
    batch_size: int = _f(16, "batch size")
    epochs: int = _f(20, "training epochs (the seed's commands always set it)")
    lr: float = _f(1e-3, "Adam learning rate")
    # --- where it runs (logged, not hashed: it does not change what is computed) --
    device: str = _f("auto", "auto: CUDA with mixed precision when present, else CPU", DEVICES)

    # Logged as params but left out of the config hash: where/how a run executes
    # (the data is identified by its content fingerprint, not its path), and the
    # seed, so that the seeds of one configuration share a hash (MLflow can group
    # by it; a suite cell is identified by (row, seed, hash)).
    # The fold is left out for the same reason: one repeat's folds share the row's hash.
    # The encoder checkpoint's path likewise: its weights are identified by their hash (tag harness.encoder_sha256).
    UNHASHED = ("data_root", "device", "seed", "fold", "encoder_checkpoint")
    # Hashed only where they differ from the value that reproduces older stores' computation: `normalize` is
    # resolved from `auto` before hashing, and `train` is what every run did before it existed.
    HASHED_UNLESS = {"normalize": "train", "C": None, "kernel": "linear"}
    # Fields added after stores were written: hashed only where they differ from their default, so a
    # finished cell keeps its hash (and is not trained again) across the upgrade.
    HASHED_UNLESS_DEFAULT = ("corpus", "labels", "label_map", "protocol", "test_corpus", "features", "layer")

    def __post_init__(self) -> None:
        self._check_types()
        for name in ("mode", "model", "split", "device", "protocol", "features", "normalize", "kernel"):
            choices = _meta(name)["choices"]
            if getattr(self, name) not in choices:
                raise ConfigError(name, f"expected one of {', '.join(choices)}, got {getattr(self, name)!r}")
        for name in ("train_ratio", "val_ratio"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ConfigError(name, f"must be between 0 and 1 (exclusive), got {v}")
        if not self.cv_folds and self.train_ratio + self.val_ratio >= 1.0 - 1e-9:  # under CV the folds hold the test set
            raise ConfigError(
                "val_ratio",
                f"train_ratio + val_ratio must be < 1 so that a test set remains, "
                f"got {self.train_ratio} + {self.val_ratio} = {self.train_ratio + self.val_ratio:g}",
            )
        for name in ("lr", "epochs", "batch_size", "sr", "n_mels", "n_fft", "hop_length"):
            v = getattr(self, name)
            if not v > 0:
                raise ConfigError(name, f"must be > 0, got {v}")
        if self.hop_length > self.n_fft:
            raise ConfigError("hop_length", f"must be <= n_fft ({self.n_fft}), got {self.hop_length}")
        if self.focal_gamma < 0:
            raise ConfigError("focal_gamma", f"must be >= 0, got {self.focal_gamma}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.mixup_alpha < 0:
            raise ConfigError("mixup_alpha", f"must be >= 0 (0 = off), got {self.mixup_alpha}")
        for name in ("specaug_freq", "specaug_time"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.specaug_freq > self.n_mels and self.features == "logmel":
            raise ConfigError("specaug_freq", f"must be <= n_mels ({self.n_mels}), got {self.specaug_freq}")
        if self.seed < 0:
            raise ConfigError("seed", f"must be >= 0, got {self.seed}")
        self._check_corpus()
        self._check_cv()
        self._check_frontend()
        self._check_classic()
        # Resolved once, here: logged, hashed and read as the concrete choice. A `replace` that changes the
        # design (test_corpus, protocol) keeps it: build the config anew from its fields for that.
        if self.normalize == "auto":
            object.__setattr__(self, "normalize", default_normalize(self))

    def _check_classic(self) -> None:
        if self.C is not None and not self.C > 0:
            raise ConfigError("C", f"must be > 0 (or omitted: chosen on the validation speakers), got {self.C}")
        if self.model not in CLASSIC_MODELS:
            for name, default, of in (("C", None, "logreg / svm"), ("kernel", "linear", "svm")):
                if getattr(self, name) != default:
                    raise ConfigError(name, f"is a setting of --model {of}, not of --model {self.model}")
            return
        if self.kernel != "linear" and self.model != "svm":
            raise ConfigError("kernel", f"is a setting of --model svm, not of --model {self.model}")
        for name in NOT_CLASSIC:
            if getattr(self, name) != _default(name):
                raise ConfigError(name, f"--model {self.model} is fitted by scikit-learn on one vector per clip: "
                                        f"no gradient training to change with it (leave it at {_default(name)}, "
                                        f"got {getattr(self, name)}); --class_weight_loss does apply")

    def _check_frontend(self) -> None:
        """Each switch that cannot apply to the chosen front-end or head is an error naming it."""
        f = self.features
        if f == "logmel":
            if self.model not in CNN_MODELS:
                raise ConfigError("model", f"{self.model} is a model for another front-end (--features egemaps, "
                                           f"wavlm_base, ...); on logmel use {' or '.join(CNN_MODELS)}")
            for name in ("layer", "encoder_checkpoint"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, "only means something with a self-supervised encoder (--features "
                                            "wav2vec2_base, wavlm_base, ...), not with --features logmel")
            return
        if self.model not in HEAD_MODELS + CLASSIC_MODELS:
            raise ConfigError("model", f"{self.model} trains on log-mel; with --features {f} use "
                                       f"{', '.join(HEAD_MODELS + CLASSIC_MODELS)}")
        for name in LOGMEL_FIELDS:
            if getattr(self, name) != _default(name):
                raise ConfigError(name, f"is a log-mel setting; --features {f} has its own (leave it at "
                                        f"{_default(name)}), got {getattr(self, name)}")
        if self.use_bn:
            raise ConfigError("use_bn", f"BatchNorm belongs to SmallCNN's convolutions; the {self.model} head on "
                                        f"--features {f} has none")
        if f in FUNCTIONALS:
            if self.use_specaug:
                raise ConfigError("use_specaug", f"--features {f} is one vector of functionals per clip: no "
                                                 f"frames or channels over time to mask")
            for name in ("layer", "encoder_checkpoint"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, f"only means something with a self-supervised encoder, not with "
                                            f"--features {f}")
        elif self.layer is not None and self.layer < 1:
            raise ConfigError("layer", f"expected a transformer layer 1..L of {f}, got {self.layer}")

    def _check_corpus(self) -> None:
        from harness.corpora import NAMES
        from harness.corpora.base import EMOTIONS

        names = [n.strip() for n in self.corpus.split(",")]
        for n in names:
            if n != "auto" and n not in NAMES:
                raise ConfigError("corpus", f"expected auto or one of {', '.join(NAMES)}, got {n!r}"
                                            f"{did_you_mean(n, NAMES)}")
        roots = self.data_roots
        if len(names) > 1 and len(names) != len(roots):
            raise ConfigError("corpus", f"names {len(names)} corpora but --data_root gives {len(roots) or 'no'} "
                                        f"folder(s): one name per folder")
        for label in self.keep_labels:
            if label not in EMOTIONS:
                raise ConfigError("labels", f"unknown label {label!r}: expected names of {', '.join(EMOTIONS)}")
        for a, b in self.label_mapping.items():
            for v in (a, b):
                if v not in EMOTIONS:
                    raise ConfigError("label_map", f"unknown label {v!r}: expected from=to pairs of "
                                                   f"{', '.join(EMOTIONS)}")
        if self.test_corpus is not None:
            if len(roots) < 2:
                raise ConfigError("test_corpus", "needs at least two corpora in --data_root (train on the others)")
            if self.cv_folds or self.protocol != "kfold" or self.split != "actor":
                raise ConfigError("test_corpus", "is one split by corpus: it goes without --cv_folds, --protocol "
                                                 "and --split random")
        if self.protocol == "emobox":
            if self.cv_folds not in (0, EMOBOX_FOLDS):
                raise ConfigError("cv_folds", f"--protocol emobox has {EMOBOX_FOLDS} folds, got {self.cv_folds}")
            object.__setattr__(self, "cv_folds", EMOBOX_FOLDS)  # the protocol fixes K
        if self.protocol != "kfold" and self.split != "actor":
            raise ConfigError("protocol", f"{self.protocol} splits by speaker: it needs --split actor, got --split "
                                          f"{self.split}")
        if self.protocol == "declared" and self.cv_folds:
            raise ConfigError("protocol", "declared is the manifest's one split: it goes without --cv_folds")

    @property
    def data_roots(self) -> tuple[str, ...]:
        return tuple(r.strip() for r in self.data_root.split(",") if r.strip()) if self.data_root else ()

    @property
    def corpus_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.corpus.split(","))

    @property
    def keep_labels(self) -> tuple[str, ...]:
        return tuple(x.strip() for x in self.labels.split(",") if x.strip())

    @property
    def label_mapping(self) -> dict[str, str]:
        pairs = [p.strip() for p in self.label_map.split(",") if p.strip()]
        out = {}
        for p in pairs:
            if p.count("=") != 1:
                raise ConfigError("label_map", f"expected from=to pairs separated by ',', got {p!r}")
            a, b = (x.strip() for x in p.split("="))
            out[a] = b
        return out

    def _check_cv(self) -> None:
        if self.cv_folds < 0 or self.cv_folds == 1:
            raise ConfigError("cv_folds", f"expected 0 (one split) or a number of folds >= 2, got {self.cv_folds}")
        if self.fold is not None:
            data_folds = self.protocol not in ("kfold", "declared")  # K comes from the data, set before the run
            if not self.cv_folds and not data_folds:
                raise ConfigError("fold", "only means something with --cv_folds K (a fold of K)")
            if self.fold < 0 or (self.cv_folds and self.fold >= self.cv_folds):
                raise ConfigError("fold", f"expected 0..{self.cv_folds - 1} (a fold of --cv_folds {self.cv_folds}), "
                                          f"got {self.fold}")
        if self.cv_folds:
            if self.split != "actor":
                raise ConfigError("cv_folds", "cross-validation is speaker-grouped: it needs --split actor, "
                                              f"got --split {self.split}")
            if self.train_ratio != _default("train_ratio"):
                raise ConfigError("train_ratio", f"has no meaning with --cv_folds {self.cv_folds} (each fold's actors "
                                                 f"are its test set, validation takes --val_ratio, the rest trains); "
                                                 f"leave it at {_default('train_ratio')}, got {self.train_ratio}")

    def _check_types(self) -> None:
        # YAML rows and study samples arrive untyped: reject a string lr or a
        # float epoch count here rather than deep inside training.
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            t = f.type
            if f.name in ("data_root", "test_corpus"):
                ok = v is None or isinstance(v, str)
                expected = "a path"
            elif f.name == "encoder_checkpoint":
                ok = v is None or isinstance(v, str)
                expected = "a path"
            elif f.name == "C":
                ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
                expected = "a number"
                if ok and isinstance(v, int):
                    object.__setattr__(self, f.name, float(v))
            elif f.name in ("fold", "layer"):
                ok = v is None or (isinstance(v, int) and not isinstance(v, bool))
                expected = "an integer"
            elif t == "bool":
                ok, expected = isinstance(v, bool), "true or false"
            elif t == "int":
                ok, expected = isinstance(v, int) and not isinstance(v, bool), "an integer"
            elif t == "float":
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                expected = "a number"
                if ok and isinstance(v, int):
                    object.__setattr__(self, f.name, float(v))
            else:
                ok, expected = isinstance(v, str), "a string"
            if not ok:
                raise ConfigError(f.name, f"expected {expected}, got {v!r}")

    # --- construction ---------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Build from a mapping (suite row, study trial); unknown keys are errors."""
        known = set(cls.field_names())
        for key in values:
            if key not in known:
                raise ConfigError(str(key), f"unknown setting{did_you_mean(str(key), known)}")
        values = dict(values)
        # A YAML file may write the labels as a list and the label map as a mapping: one text form each.
        if isinstance(values.get("labels"), list) and all(isinstance(x, str) for x in values["labels"]):
            values["labels"] = ",".join(values["labels"])
        if isinstance(values.get("label_map"), dict) and all(isinstance(k, str) and isinstance(v, str)
                                                              for k, v in values["label_map"].items()):
            values["label_map"] = ",".join(f"{k}={v}" for k, v in values["label_map"].items())
        return cls(**values)

    def replace(self, **changes: Any) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    # --- identity -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_params(self) -> dict[str, str]:
        """Every field, as MLflow params (strings; None as empty)."""
        return {k: ("" if v is None else str(v)) for k, v in self.to_dict().items()}

    def hashed_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in self.UNHASHED
                and not (k in self.HASHED_UNLESS_DEFAULT and v == _default(k))
                and not (k in self.HASHED_UNLESS and v == self.HASHED_UNLESS[k])}

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.hashed_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def test_ratio(self) -> float:
        return 1.0 - self.train_ratio - self.val_ratio


def is_cross_corpus_design(cfg: "RunConfig") -> bool:
    """Trained on some corpora, tested on another: a test corpus, or leave-one-corpus-out folds."""
    return cfg.test_corpus is not None or cfg.protocol == "leave_one_corpus_out"


def default_normalize(cfg: "RunConfig") -> str:
    """`--normalize auto`: train on one corpus (inductive: a model scores a clip alone, as `harness predict`
    does); speaker across corpora, where the training statistics fit the test corpus worst. Measured in
    benchmarks/field.py; why: docs/runs.md, Normalisation."""
    return "speaker" if is_cross_corpus_design(cfg) else "train"


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(RunConfig) if f.name == name)


def _meta(name: str) -> Mapping[str, Any]:
    return next(f.metadata for f in dataclasses.fields(RunConfig) if f.name == name)


def did_you_mean(word: str, candidates: Any) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
