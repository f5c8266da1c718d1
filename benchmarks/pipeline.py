"""Pipeline benchmark: what the feature cache saves, what the training loop costs, what audio as it comes costs.

Four measurements, all taken in this one run (ratios are never compared across runs):

(a) Feature cache. `harness.corpora.load.load_corpus` + `harness.train.features.compute_features`
    on a fresh cache (first run: SHA-1 of every file, decode, resample, log-mel, save)
    and again on the warm cache (repeat run: a stat per file + one `np.load`), each repeat
    in a fresh interpreter (timed after its imports) as a later `harness train` would be.
    Ratio repeat / first (median of 5 repeats), goal <= 0.02: a repeat run must not pay
    for features again. The first run's clips/s is printed too.
    torchaudio and soundfile are imported before the clock starts, so the first run
    counts the work, not one-time imports (this makes the ratio slightly harder to meet).

(b) Harness epoch overhead. One epoch of `harness.train.run.fit` (SmallCNN, default
    features: sr 22050, 128 mels, n_fft 1024, hop 512, batch 16, Adam lr 1e-3) against a
    bare PyTorch loop over the same standardised in-memory tensors: same model class,
    optimiser, batch size, seed and torch threads, plain cross-entropy, plus the same
    validation forward pass each epoch. The harness epoch is the interval between two
    `on_epoch` callbacks (train + validation + metrics + best-state copy). The two are
    interleaved epoch by epoch (a bare epoch runs inside each callback, outside the
    harness's interval), so bursts of load from other processes on a shared machine hit
    both sides alike; the first epoch of each (setup, warm-up) is discarded.
    Goal figure: the median over epochs of (harness epoch / the bare epoch right after
    it), goal <= 1.05. The ratio of the two median epoch times and of the two fastest
    epochs are printed beside it; on a quiet machine all three agree, on a shared one
    only the paired figure is stable (a burst of load can cover several epochs of one
    side in a row, which moves a ratio of medians by +-20%).

(c) Throughput. Training and evaluation samples/s of SmallCNN and ResNet18 on a
    (batch 16, 1, 128, 130) input, on CPU and, when present, on CUDA (with the mixed
    precision the harness uses there); the best of 3 timing windows, as the least
    disturbed by other processes. Informational: no goal.

(d) Audio as it comes. Seconds per clip of a first feature pass (load_corpus with a fresh
    cache + compute_features, in a fresh cache folder, imports before the clock) of RAVDESS as
    it comes (the reference: 48 kHz, 3-5 s, some stereo; 120 clips of RAVDESS_ROOT) and of
    TurEV-DB's clips (TUREV_ROOT, 44.1 kHz, 0.35-2.5 s; left out when unset), synthetic clips at
    16 kHz mono, at 44.1 kHz stereo, and at 48 kHz cut to 0.3 s and tiled to 10 s (the length
    extremes). In each of --first-pass-rounds rounds (default 3) the reference runs before and
    after every case, every file read once before the clock; each case's goal figure is the
    median over rounds of (its s/clip / the mean of the reference passes beside it), goal <= 1.5.
    Details in first_pass.py.

Real audio when RAVDESS_ROOT is set, else the synthetic corpus. Everything is written
to a temporary directory (feature cache included); no MLflow or Optuna store is used.

    RAVDESS_ROOT=/path/to/ravdess [TUREV_ROOT=/path/to/turev] python benchmarks/pipeline.py [--check]
    ... python benchmarks/pipeline.py --first-pass-only [--first-pass-rounds 3]   # (d) only
    python benchmarks/pipeline.py --quick      # every part once, briefly (tests/test_benchmarks.py)

Exit code 0 (a measurement), or with --check 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable


FEATURE_GOAL = 0.02  # repeat / first feature time
EPOCH_GOAL = 1.05  # harness / bare median epoch time
FIRST_PASS_GOAL = 1.5  # a case's first-pass s/clip / RAVDESS's

from common import REPO, Ratio, load_average, machine_lines, print_summary, scratch  # noqa: E402


# --- (a) feature cache ------------------------------------------------------------

# A repeat run is what any later `harness train` pays: a new process (imports done) with
# a warm cache. It runs in a fresh interpreter because inside one long-lived process a
# second np.load of the same size reuses memory the allocator already faulted in and
# looks several times cheaper than a real repeat run.
REPEAT_SNIPPET = """
import hashlib, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import soundfile, torch, torchaudio
from harness.corpora.load import load_corpus
from harness.train.features import compute_features
root, cache, sr, n_mels, n_fft, hop = Path(sys.argv[2]), Path(sys.argv[3]), *map(int, sys.argv[4:8])
t0 = time.perf_counter()
corpus = load_corpus([root], ["auto"], cache)
t1 = time.perf_counter()
feats = compute_features(corpus, sr, n_mels, n_fft, hop, cache)
t2 = time.perf_counter()
print(json.dumps({"scan_s": t1 - t0, "total_s": t2 - t0, "sha1": hashlib.sha1(feats.numpy().tobytes()).hexdigest()}))
"""


@dataclass(frozen=True)
class FeatureTiming:
    n_clips: int
    first_s: float
    repeat_s: list[float]  # each repeat run (scan + load), each in a fresh process
    repeat_scan_s: float  # median of the scan part alone
    npy_mb: float

    @property
    def repeat_median_s(self) -> float:
        return statistics.median(self.repeat_s)



def bench_features(root: Path, cache_dir: Path, sr: int, n_mels: int, n_fft: int, hop: int,
                   repeats: int = 5) -> FeatureTiming:
    import hashlib
    import json
    import subprocess

    import soundfile  # noqa: F401  (imports paid before the clock)
    import torchaudio  # noqa: F401

    from harness.corpora.load import load_corpus
    from harness.train.features import compute_features

    assert not (cache_dir / "features").exists(), "the first run needs a fresh cache"
    t0 = time.perf_counter()
    corpus = load_corpus([root], ["auto"], cache_dir)
    first = compute_features(corpus, sr, n_mels, n_fft, hop, cache_dir)
    first_s = time.perf_counter() - t0
    first_sha1 = hashlib.sha1(first.numpy().tobytes()).hexdigest()

    repeat_s, scan_s = [], []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", REPEAT_SNIPPET, str(REPO), str(root), str(cache_dir),
                              str(sr), str(n_mels), str(n_fft), str(hop)],
                             capture_output=True, text=True, check=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
        assert res["sha1"] == first_sha1, "the cache returned different features"
        repeat_s.append(res["total_s"])
        scan_s.append(res["scan_s"])
    npy = sum(p.stat().st_size for p in (cache_dir / "features").glob("*.npy"))
    return FeatureTiming(n_clips=len(corpus.clips), first_s=first_s, repeat_s=repeat_s,
                         repeat_scan_s=statistics.median(scan_s), npy_mb=npy / 2**20)


# --- (b) harness epoch vs bare loop ----------------------------------------------------

class BareLoop:
    """The same epochs as a plain PyTorch loop: no metrics, no scaler, no checkpoint copy."""

    def __init__(self, cfg, data, device) -> None:
        import torch

        from harness.train.models import SmallCNN, memory_format

        tr, va = data.split.train, data.split.val
        mean, std = float(data.features[tr].mean()), float(data.features[tr].std()) + 1e-6
        self.x_train = ((data.features[tr] - mean) / std).to(device)
        self.y_train = data.labels[tr].to(device)
        self.x_val = ((data.features[va] - mean) / std).to(device)
        self.device, self.bs = device, cfg.batch_size
        torch.manual_seed(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        # The harness's layout for this model and device, so that (b) measures the loop, not the layout.
        self.model = SmallCNN(len(data.classes), dropout=cfg.dropout, use_bn=cfg.use_bn).to(device).to(
            memory_format=memory_format("smallcnn", device.type))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)

    def epoch(self) -> float:
        """Wall seconds of one training epoch + the validation forward pass."""
        import torch
        import torch.nn.functional as F

        from harness.train.run import EVAL_BATCH

        t0 = time.perf_counter()
        model, opt, x, y, bs = self.model, self.opt, self.x_train, self.y_train, self.bs
        model.train()
        order = torch.randperm(len(x), generator=self.gen)
        for i in range(0, len(x), bs):
            idx = order[i:i + bs].to(self.device)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            for i in range(0, len(self.x_val), EVAL_BATCH):
                model(self.x_val[i:i + EVAL_BATCH])
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0


def interleaved_epochs(cfg, data, device) -> tuple[list[float], list[float]]:
    """(harness epoch seconds, bare epoch seconds), alternating H, B, H, B, ...

    The harness epoch is the interval from the end of one `on_epoch` callback to the
    start of the next (training + validation + metrics + best-state copy inside `fit`);
    a bare epoch runs inside each callback, on its own model, so each pair is measured
    seconds apart and bursts of load from other processes hit both sides alike. The
    first of each (setup, warm-up) is dropped. `fit` reseeds torch at its start, so the
    bare model built before it does not change the harness's run.
    """
    import torch

    from harness.train.run import fit

    bare = BareLoop(cfg, data, device)
    harness_s: list[float] = []
    bare_s: list[float] = []
    mark = time.perf_counter()

    def on_epoch(epoch: int, row: dict) -> None:
        nonlocal mark
        if device.type == "cuda":
            torch.cuda.synchronize()
        harness_s.append(time.perf_counter() - mark)
        bare_s.append(bare.epoch())
        mark = time.perf_counter()

    fit(cfg, data, out_dir=None, on_epoch=on_epoch, device=device)
    return harness_s[1:], bare_s[1:]


def fmt(values: Iterable[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


# --- (c) throughput -------------------------------------------------------------------

def throughput(model_name: str, device, n_train: int, n_eval: int, batch: int = 16, windows: int = 3,
               n_mels: int = 128, frames: int = 130, n_classes: int = 3,
               channels_last: bool | None = None) -> tuple[float, float]:
    """(train samples/s, eval samples/s) on random input, after one warm-up batch each;
    n_train and n_eval samples per timing window. `channels_last` None: the layout the harness
    chooses for this model and device (`harness.train.models.channels_last`)."""
    from harness.train.models import channels_last as chosen

    cl = chosen(model_name, device.type) if channels_last is None else channels_last
    step = Steps(model_name, device, batch, n_mels, frames, n_classes, cl)
    return step.best(step.train, n_train, windows), step.best(step.evaluate, n_eval, windows)


class Steps:
    """A model, its optimiser and one random batch in one memory layout: a training step
    (forward, backward, Adam; fp16 autocast on CUDA as in the harness) and an eval step."""

    def __init__(self, model_name: str, device, batch: int, n_mels: int, frames: int, n_classes: int,
                 channels_last: bool) -> None:
        import torch

        from harness.train.models import build_model

        torch.manual_seed(0)
        self.device, self.batch, self.amp = device, batch, device.type == "cuda"
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = build_model(model_name, n_classes).to(device).to(memory_format=fmt)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.x = torch.randn(batch, 1, n_mels, frames, device=device).contiguous(memory_format=fmt)
        self.y = torch.randint(0, n_classes, (batch,), device=device)

    def sync(self) -> None:
        if self.amp:
            import torch
            torch.cuda.synchronize()

    def train(self) -> None:
        import torch
        import torch.nn.functional as F

        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = F.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()

    def evaluate(self) -> None:
        import torch

        self.model.eval()
        with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            self.model(self.x)

    def window(self, step: Callable[[], None], n_samples: int) -> float:
        """samples/s of one timing window of about n_samples."""
        steps = max(1, n_samples // self.batch)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        self.sync()
        return steps * self.batch / (time.perf_counter() - t0)

    def best(self, step: Callable[[], None], n_samples: int, windows: int) -> float:
        """Best samples/s of `windows` windows, after one warm-up step: on a shared machine the
        fastest window is the one least slowed by other processes."""
        step()
        self.sync()
        return max(self.window(step, n_samples) for _ in range(windows))


@dataclass(frozen=True)
class LayoutTiming:
    model: str
    device: str
    shape: tuple[int, int]
    batch: int
    contiguous_sps: float  # median training samples/s
    channels_last_sps: float
    ratio: float  # median of the paired window ratios, channels-last / contiguous
    chosen: str


def layout_ratio(model_name: str, device, n_mels: int, frames: int, batch: int, n_samples: int,
                 rounds: int = 5) -> LayoutTiming:
    """Training samples/s in both memory layouts, windows interleaved (contiguous, channels-last,
    contiguous, ...) so that load from other processes hits both alike; the figure is the median
    of the paired ratios channels-last / contiguous."""
    from harness.train.models import layout_name

    a = Steps(model_name, device, batch, n_mels, frames, 3, channels_last=False)
    b = Steps(model_name, device, batch, n_mels, frames, 3, channels_last=True)
    for s in (a, b):  # warm-up: first calls pick kernels, allocate
        s.train()
        s.sync()
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(a.window(a.train, n_samples))
        tb.append(b.window(b.train, n_samples))
    return LayoutTiming(model_name, device.type, (n_mels, frames), batch, statistics.median(ta),
                        statistics.median(tb), statistics.median(y / x for x, y in zip(ta, tb)),
                        layout_name(model_name, device.type))


# (CPU samples per timing window: ResNet18 on CPU is slow, a few batches keep it short.)
WINDOW_SAMPLES = {("cpu", "smallcnn", 64): 160, ("cpu", "smallcnn", 128): 96,
                  ("cpu", "resnet18", 64): 48, ("cpu", "resnet18", 128): 32}
LAYOUT_SHAPES = ((64, 65), (128, 130))  # the cpu profile's input, the seed's


def throughput_report(layout_rounds: int = 5, quick: bool = False) -> list[LayoutTiming]:
    """(c): samples/s in the layout the harness uses, then both layouts side by side; `quick`: one batch per
    window, one window."""
    import torch

    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print("\n(c) throughput, input (16, 1, 128, 130), batch 16, random data, in the harness's layout, after one "
          f"warm-up batch; best of {1 if quick else 3} window(s)"
          + ("; CUDA with fp16 autocast" if len(devices) > 1 else ""))
    print(f"    {'model':<10} {'device':<6} {'layout':<14} {'train samples/s':>16} {'eval samples/s':>15}  "
          f"samples per window")
    from harness.train.models import layout_name

    for dev in devices:
        for name in ("smallcnn", "resnet18"):
            n_train = 16 if quick else WINDOW_SAMPLES.get((dev.type, name, 128), 800)
            tr_sps, ev_sps = throughput(name, dev, n_train, 2 * n_train, windows=1 if quick else 3)
            print(f"    {name:<10} {dev.type:<6} {layout_name(name, dev.type):<14} {tr_sps:>16.1f} {ev_sps:>15.1f}  "
                  f"{n_train} / {2 * n_train}", flush=True)
    print(f"\n    memory layout: training samples/s (forward, backward, Adam), batch 16, contiguous (NCHW) and "
          f"channels-last (NHWC) windows interleaved, {layout_rounds} each; ratio = median of the paired "
          f"ratios channels-last / contiguous (> 1: channels-last faster); harness = the layout it uses")
    print(f"    {'model':<10} {'device':<6} {'input':<9} {'contiguous':>11} {'channels-last':>14} {'ratio':>7}  harness")
    out = []
    for dev in devices:
        for name in ("smallcnn", "resnet18"):
            for n_mels, frames in LAYOUT_SHAPES:
                t = layout_ratio(name, dev, n_mels, frames, 16,
                                 16 if quick else WINDOW_SAMPLES.get((dev.type, name, n_mels), 800),
                                 layout_rounds)
                out.append(t)
                print(f"    {name:<10} {dev.type:<6} {f'{n_mels}x{frames}':<9} {t.contiguous_sps:>11.1f} "
                      f"{t.channels_last_sps:>14.1f} {t.ratio:>7.3f}  {t.chosen}", flush=True)
    return out


# --- (d) audio as it comes -------------------------------------------------------------

def first_pass_report(tmp: Path, sr: int, n_mels: int, n_fft: int, hop: int, rounds: int
                      ) -> tuple[list[Ratio], list[str]]:
    """(d): each case's first-pass s/clip against RAVDESS's, interleaved rounds (first_pass.py)."""
    import soundfile  # noqa: F401  (imports paid before the clock)
    import torchaudio  # noqa: F401

    from first_pass import build_cases, describe_audio, time_cases, warm_up

    print(f"\n(d) first feature pass per clip, audio as it comes: load_corpus (fresh cache) + compute_features "
          f"(sr {sr}, {n_mels} mels), a fresh cache each; {rounds} interleaved round(s), every file read once "
          f"before the clock (not timed: writing the synthetic cases) ...", flush=True)
    cases, notes = build_cases(tmp / "first-pass")
    args = (sr, n_mels, n_fft, hop)
    paths = warm_up(cases, tmp / "first-pass", args)
    for c in cases:
        print(f"    {c.name:<11} {len(paths[c.name]):>4} clips  {describe_audio(paths[c.name]):<36} {c.what}")
    for n in notes:
        print(f"    {n}")
    timings = time_cases(cases, tmp / "first-pass", args, rounds, progress=lambda line: print(line, flush=True))
    ref = timings[0]
    print(f"    {'case':<11} {'ms/clip (median)':>17} {'/ ravdess beside it':>20}  per round{'':<22} "
          f"in CPU s (no goal)")
    print(f"    {ref.case.name:<11} {ref.median_ms:>17.2f} {'':>20}  (median of its {len(ref.per_clip_s)} passes)")
    for t in timings[1:]:
        rounds_ = f"[{', '.join(f'{x:.3f}' for x in t.ratios)}]"
        print(f"    {t.case.name:<11} {t.median_ms:>17.2f} {t.ratio:>20.3f}  {rounds_:<31} {t.cpu_ratio:.3f}")
    ratios = [Ratio(f"(d) first pass s/clip, {t.case.name} / ravdess", t.ratio, FIRST_PASS_GOAL) for t in timings[1:]]
    notes = [f"(d) reference: ravdess {ref.median_ms:.2f} ms/clip ({ref.n_clips} clips, {ref.case.what}); "
             f"each case's ratio: median of {rounds} round(s)"] + [f"(d) {n}" for n in notes]
    return ratios, notes


# --- main -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--epochs", type=int, default=6, help="epochs per fit, the first discarded (default 6)")
    p.add_argument("--rounds", type=int, default=2, help="fits of --epochs epochs each (default 2)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--no-throughput", action="store_true", dest="no_throughput", help="skip part (c)")
    g.add_argument("--throughput-only", action="store_true", dest="throughput_only",
                   help="part (c) only: throughput and the memory-layout comparison (no corpus needed)")
    g.add_argument("--first-pass-only", action="store_true", dest="first_pass_only",
                   help="part (d) only: first feature pass per clip of each kind of audio against RAVDESS")
    p.add_argument("--layout-rounds", type=int, default=5, dest="layout_rounds",
                   help="(c): interleaved timing windows per layout (default 5)")
    p.add_argument("--first-pass-rounds", type=int, default=3, dest="first_pass_rounds",
                   help="(d): interleaved rounds of every case (default 3; the figure is their median)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run of every part: 64 mels x 65 frames, 1 fit of 2 epochs, one batch per throughput "
                        "window, 1 layout round, 1 first-pass round, 1 repeat run")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.layout_rounds, args.first_pass_rounds = 2, 1, 1, 1
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (the first epoch is discarded)")
    if args.layout_rounds < 1:
        p.error("--layout-rounds must be >= 1")
    if args.first_pass_rounds < 1:
        p.error("--first-pass-rounds must be >= 1")
    if args.throughput_only:
        print("\n".join(machine_lines()))
        throughput_report(args.layout_rounds, args.quick)
        print(f"\n  load avg at end: {load_average()} (1/5/15 min)")
        return 0

    with scratch("harness-bench-pipeline-") as tmp:
        if args.first_pass_only:
            from harness.config import RunConfig

            print("\n".join(machine_lines()))
            cfg = RunConfig()
            ratios, notes = first_pass_report(tmp, cfg.sr, cfg.n_mels, cfg.n_fft, cfg.hop_length,
                                              args.first_pass_rounds)
            print_summary(ratios, notes)
            return 1 if args.check and not all(r.ok for r in ratios) else 0
        return run(args, tmp)


def run(args: argparse.Namespace, tmp: Path) -> int:
    import torch

    from harness.config import RunConfig
    from harness.train.data import prepare, resolve_device, synthetic_root

    print("\n".join(machine_lines()))
    env_root = os.environ.get("RAVDESS_ROOT")
    if env_root:
        root, data_label = Path(env_root).expanduser(), f"RAVDESS_ROOT={env_root} (real audio)"
    else:
        print("RAVDESS_ROOT unset: generating the synthetic corpus (not timed) ...", flush=True)
        root, data_label = synthetic_root(tmp / "synth-cache"), "synthetic corpus (harness.synth, 8 actors)"
    print(f"data    : {data_label}")
    device = resolve_device("auto")
    cfg = RunConfig(data_root=str(root), epochs=args.epochs, device=device.type)
    if args.quick:  # the cpu profile's input (64 x 65): the same code on a quarter of the pixels
        cfg = cfg.replace(n_mels=64, hop_length=1024)
    cache = tmp / "cache"

    # (a) ------------------------------------------------------------------------
    print(f"\n(a) features: scan + log-mel (sr {cfg.sr}, {cfg.n_mels} mels, n_fft {cfg.n_fft}, hop {cfg.hop_length})",
          flush=True)
    ft = bench_features(root, cache, cfg.sr, cfg.n_mels, cfg.n_fft, cfg.hop_length, repeats=1 if args.quick else 5)
    feat_ratio = ft.repeat_median_s / ft.first_s
    print(f"    first run (fresh cache) : {ft.first_s:8.3f} s  = {ft.n_clips / ft.first_s:.1f} clips/s "
          f"({ft.n_clips} clips)")
    print(f"    repeat run (cache hit)  : {ft.repeat_median_s:8.3f} s  median of {len(ft.repeat_s)} fresh processes "
          f"[{', '.join(f'{s:.3f}' for s in ft.repeat_s)}]; scan part {ft.repeat_scan_s:.3f} s, "
          f"np.load of {ft.npy_mb:.1f} MB {ft.repeat_median_s - ft.repeat_scan_s:.3f} s")
    print(f"    repeat / first          : {feat_ratio:.4f}", flush=True)

    # (b) ------------------------------------------------------------------------
    data = prepare(cfg, cache)  # cache hit
    n_tr, n_va = len(data.split.train), len(data.split.val)
    print(f"\n(b) epoch time, SmallCNN on {device}: {n_tr} train / {n_va} val clips, batch {cfg.batch_size}, "
          f"lr {cfg.lr}, {torch.get_num_threads()} torch threads; {args.rounds} fit(s) of {args.epochs} epochs, "
          f"a bare epoch after each harness epoch, the first of each discarded", flush=True)
    h_all: list[float] = []
    b_all: list[float] = []
    for r in range(args.rounds):
        h, b = interleaved_epochs(cfg, data, device)
        h_all += h
        b_all += b
        print(f"    round {r + 1}: harness [{fmt(h)}] s; bare [{fmt(b)}] s", flush=True)
    h_med, b_med = statistics.median(h_all), statistics.median(b_all)
    epoch_ratio = h_med / b_med
    pair_ratio = statistics.median(hh / bb for hh, bb in zip(h_all, b_all))
    h_min, b_min = min(h_all), min(b_all)
    print(f"    median of the {len(h_all)} paired ratios (harness epoch / the bare epoch after it): "
          f"{pair_ratio:.4f}")
    print(f"    median epoch: harness {h_med:.3f} s, bare {b_med:.3f} s, ratio {epoch_ratio:.4f}; "
          f"fastest epoch: harness {h_min:.3f} s, bare {b_min:.3f} s, ratio {h_min / b_min:.4f}")

    # (c) ------------------------------------------------------------------------
    if not args.no_throughput:
        throughput_report(args.layout_rounds, args.quick)

    # (d) ------------------------------------------------------------------------
    d_ratios, d_notes = first_pass_report(tmp, cfg.sr, cfg.n_mels, cfg.n_fft, cfg.hop_length, args.first_pass_rounds)

    ratios = [Ratio("(a) feature time, repeat / first run", feat_ratio, FEATURE_GOAL),
              Ratio("(b) epoch time, harness fit / bare loop", pair_ratio, EPOCH_GOAL)] + d_ratios
    print_summary(ratios, d_notes + [f"(b) is the median of {len(h_all)} paired epoch ratios; ratio of median epochs "
                           f"{epoch_ratio:.4f}, of fastest epochs {h_min / b_min:.4f} (no goal)",
                           f"data: {data_label}; first-run feature speed {ft.n_clips / ft.first_s:.1f} clips/s",
                           f"device: {device}; torch threads {torch.get_num_threads()}"])
    return 1 if args.check and not all(r.ok for r in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
