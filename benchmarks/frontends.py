"""Front-ends (issue 24): what extraction costs, what a head cell costs, and what eGeMAPS scores.

(a) extraction clips/s per front-end family: eGeMAPS and ComParE (openSMILE), and each encoder
    family (wav2vec 2.0, HuBERT, WavLM) at its bundle's base and large size, on CPU and on CUDA when
    present. The encoders are torchaudio's builders with the bundles' configurations and random
    weights: the speed of a forward pass does not depend on the weights, so no download is needed.
    Clips are the corpus's own (read, resampled, embedded), the same code path as the cache's.
(b) a head cell's seconds vs a SmallCNN cell's on the same corpus, features cached: `harness.train.
    run.run` (prepare from the cache, training, test scoring, MLflow logging) for SmallCNN on log-mel
    (the suite row's 25 epochs, batch 16), eGeMAPS + linear and eGeMAPS + mlp (30 epochs, batch 32),
    interleaved over rounds; goal <= 0.2 for eGeMAPS + linear.
(c) what a cell on a cached corpus spends on features: eGeMAPS's cached read / its first extraction
    on this corpus; goal <= 0.02.
(d) on the corpus (the shared 8 actors), speaker-grouped 4-fold CV x 2 repeats of eGeMAPS + linear,
    eGeMAPS + mlp and SmallCNN (rows of experiments/frontends.yaml, profile cv): macro-F1 and UA
    (unweighted accuracy, the mean per-class recall), in reports made by `harness report`
    (reports/frontends.md, reports/frontends-ua.md with --write-reports).
(e) with --frame-head N: seconds of a head cell on a base-size encoder's frames, N epochs: all 12
    layers weighted and one layer (trained from each clip's moments), and the 12 layers with
    SpecAugment (trained on the frames); against (b)'s SmallCNN cell: informational.

    RAVDESS_ROOT=/path/to/actors python benchmarks/frontends.py [--check] [--rounds 2] [--write-reports]
    python benchmarks/frontends.py --quick      # smoke run: (a) on 6 clips, (b) 1 round of 2 epochs, no (d)
    python benchmarks/frontends.py --quick --frame-head 3     # and (e): 3 epochs of a head on base-size frames

Exit code 0 (a measurement), or with --check 1 when a goal is missed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from common import Ratio, corpus_root, machine_lines, print_summary, scratch  # noqa: E402

CELL_GOAL = 0.2
CACHED_GOAL = 0.02
FAMILIES = ("wav2vec2_base", "wav2vec2_large", "hubert_base", "hubert_large", "wavlm_base", "wavlm_large")


def extraction_rates(corpus, n_clips: int, devices) -> list[str]:
    """(a): clips/s and x real time per front-end, on the first `n_clips` clips."""
    import opensmile
    import torch
    from torchaudio.models import wav2vec2_model, wavlm_model

    from harness.corpora.base import read_audio
    from harness.train.frontends import functionals, ssl
    from harness.train.frontends.resample import ToRate

    clips = corpus.clips[:n_clips]
    audio = [read_audio(c.path) for c in clips]
    seconds = sum(len(s) / r for s, r in audio)
    lines = [f"(a) extraction on {len(clips)} clips ({seconds:.0f} s of audio), reading included:"]

    def line(name: str, where: str, secs: float) -> None:
        lines.append(f"    {name:<16} {where:<5} {len(clips) / secs:8.2f} clips/s  {seconds / secs:8.1f} x real time")
        print(lines[-1], flush=True)

    to16 = ToRate(functionals.RATE)
    for name, set_name in functionals.SETS.items():
        smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, set_name),
                                feature_level=opensmile.FeatureLevel.Functionals)
        t0 = time.perf_counter()
        for c in clips:
            s, r = read_audio(c.path)
            smile.process_signal(to16(s, r).numpy(), functionals.RATE)
        line(name, "cpu", time.perf_counter() - t0)
    for name in FAMILIES:
        b = ssl.bundle(name)
        torch.manual_seed(0)
        model = (wavlm_model if b._model_type == "WavLM" else wav2vec2_model)(**b._params).eval()
        layers = list(range(1, ssl.n_layers(model) + 1))
        to_rate = ToRate(b.sample_rate)
        for device in devices:
            model = model.to(device)
            ssl.embed(model, to_rate(*audio[0]).to(device), layers, b._normalize_waveform)  # warm-up
            t0 = time.perf_counter()
            for c in clips:
                s, r = read_audio(c.path)
                ssl.embed(model, to_rate(s, r).to(device), layers, b._normalize_waveform)
            if device.type == "cuda":
                torch.cuda.synchronize()
            line(name, device.type, time.perf_counter() - t0)
        del model
    return lines


def cell_seconds(data_root: Path, rounds: int, epochs: dict, uri: str, quick: bool = False) -> tuple[dict, list[str]]:
    """(b): wall seconds of whole cells, interleaved, features cached beforehand; `quick`: SmallCNN on 64 mels x 65."""
    from harness.config import RunConfig
    from harness.train import run as training

    small = {"n_mels": 64, "hop_length": 1024} if quick else {}
    cfgs = {"smallcnn": RunConfig(data_root=str(data_root), model="smallcnn", epochs=epochs["smallcnn"],
                                  batch_size=16, device="cpu", **small),
            "egemaps-linear": RunConfig(data_root=str(data_root), features="egemaps", model="linear",
                                        epochs=epochs["head"], batch_size=32, device="cpu"),
            "egemaps-mlp": RunConfig(data_root=str(data_root), features="egemaps", model="mlp",
                                     epochs=epochs["head"], batch_size=32, device="cpu")}
    for cfg in cfgs.values():
        training.prepare(cfg)  # fill the caches first: (b) times cells on a cached corpus
    # The store's first run creates its tables (seconds): a warm-up cell, not timed.
    training.run(cfgs["egemaps-linear"].replace(epochs=1), experiment="bench-frontends-cells", tracking_uri=uri,
                 out_dir=Path(uri.removeprefix("sqlite:///")).parent / "art")
    times: dict[str, list[float]] = {k: [] for k in cfgs}
    for r in range(rounds):
        for name, cfg in cfgs.items():
            t0 = time.perf_counter()
            training.run(cfg.replace(seed=r), experiment="bench-frontends-cells", tracking_uri=uri,
                         out_dir=Path(uri.removeprefix("sqlite:///")).parent / "art")
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    lines = [f"(b) whole cells on the cached corpus, median of {rounds} interleaved round(s):"]
    lines += [f"    {k:<16} {v:8.2f} s  ({', '.join(f'{t:.2f}' for t in times[k])})" for k, v in med.items()]
    print("\n".join(lines), flush=True)
    return med, lines


def cached_share(corpus, cache_dir: Path) -> tuple[float, list[str]]:
    """(c): eGeMAPS's cached read over its first extraction (the benchmark's cache starts empty)."""
    from harness.train.frontends.functionals import functionals

    fresh = cache_dir
    t0 = time.perf_counter()
    functionals(corpus, "egemaps", fresh)
    first = time.perf_counter() - t0
    reads = []
    for _ in range(5):
        t0 = time.perf_counter()
        functionals(corpus, "egemaps", fresh)
        reads.append(time.perf_counter() - t0)
    cached = statistics.median(reads)
    line = (f"(c) eGeMAPS features on {len(corpus.clips)} clips: first extraction {first:.1f} s, cached read "
            f"{cached * 1000:.2f} ms (median of 5): {cached / first:.2e} of the first")
    print(line, flush=True)
    return cached / first, [line]


def accuracy(data_root: Path, tmp: Path, write_reports: bool) -> list[str]:
    """(d): the eGeMAPS rows and SmallCNN of experiments/frontends.yaml, profile cv, and their reports."""
    from harness.cli import main as harness_main
    from harness.suite.file import load_suite
    from harness.suite.runner import run_suite

    uri = f"sqlite:///{tmp / 'suite.db'}"
    suite = load_suite(REPO / "experiments" / "frontends.yaml", profile="cv")
    rows = ["egemaps-linear", "egemaps-mlp", "smallcnn"]
    t0 = time.perf_counter()
    run_suite(suite, rows=rows, data_root=str(data_root), tracking_uri=uri, storage=f"sqlite:///{tmp / 'q.db'}",
              experiment="frontends", out_dir=str(tmp / "suite-art"), progress=False)
    lines = [f"(d) {', '.join(rows)}: 4-fold speaker CV x 2 repeats in {time.perf_counter() - t0:.0f} s"]
    out = REPO / "reports" if write_reports else tmp
    for metric, name in (("test_f1_macro", "frontends.md"), ("test_ua", "frontends-ua.md")):
        harness_main(["report", "--experiment", "frontends", "--tracking_uri", uri, "--metric", metric,
                      "--out", str(out / name)])
        lines.append(f"    {metric}: {out / name}")
    import mlflow
    import pandas as pd

    c = mlflow.tracking.MlflowClient(uri)
    exp = c.get_experiment_by_name("frontends")
    runs = c.search_runs([exp.experiment_id], "tags.`harness.kind` = 'cell'", max_results=1000)
    df = pd.DataFrame([{"row": r.data.tags["harness.row"], "f1": r.data.metrics["test_f1_macro"],
                        "ua": r.data.metrics["test_ua"], "s": r.data.metrics["wall_time_s"]}
                       for r in runs])
    for row, g in df.groupby("row", sort=False):
        lines.append(f"    {row:<16} macro-F1 {g.f1.mean():.3f}  UA {g.ua.mean():.3f}  (mean of {len(g)} fold runs; "
                     f"{g.s.mean():.1f} s per cell)")
    print("\n".join(lines), flush=True)
    return lines


def frame_head_cell(corpus, data_root: Path, cache_dir: Path, epochs: int, uri: str) -> list[str]:
    """(e), with --frame-head: a head cell on a base-size encoder's frames (12 layers x 768, 50 frames/s of
    each clip's own length), random float16 values in the store (a head's time does not depend on them)."""
    import numpy as np

    from harness.config import RunConfig
    from harness.train import run as training
    from harness.corpora.base import read_audio
    from harness.train.frontends import store

    rng = np.random.default_rng(0)
    frames = [max(1, len(s) * 16000 // r // 320) for s, r in (read_audio(c.path) for c in corpus.clips)]
    key = "bench-frame-head"
    store.write_frames(cache_dir, key, (rng.standard_normal((n, 12, 768)).astype(np.float16) for n in frames),
                       {"frontend": "random-base", "layers": list(range(1, 13)), "n_layers_total": 12})
    base = RunConfig(data_root=str(data_root), features="egemaps", model="mlp", epochs=epochs, batch_size=32,
                     device="cpu")
    data = training.prepare(base)
    data.features = store.open_frames(cache_dir, key)
    data.frontend_tags = {"harness.features": "random base-size frames (benchmark)"}
    lines = [f"(e) an mlp head with the layer sum on random base-size frames ({sum(frames)} frames of "
             f"{len(frames)} clips, {sum(frames) * 12 * 768 * 2 / 1e9:.2f} GB float16), {epochs} epochs:"]
    t0 = time.perf_counter()
    data.features.moments()  # once per store, like the extraction: each clip's moments over its frames
    lines.append(f"    per-clip moments of the store, once: {time.perf_counter() - t0:.1f} s")
    print(lines[-1], flush=True)
    head = base.replace(features="wavlm_base")
    for name, cfg in (("weighted layers", head), ("one layer", head.replace(layer=12)),
                      ("weighted+specaug", head.replace(use_specaug=True))):  # SpecAugment reads the frames
        data.features = store.open_frames(cache_dir, key, cfg.layer)
        t0 = time.perf_counter()
        res = training.run(cfg, experiment="bench-frontends-frames", tracking_uri=uri,
                           out_dir=Path(uri.removeprefix("sqlite:///")).parent / "art-frames", data=data)
        wall = time.perf_counter() - t0
        lines.append(f"    {name:<16} {wall:8.1f} s  ({wall / epochs:.1f} s per epoch; best epoch {res['best_epoch']})")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: few clips, 1 short round (SmallCNN on 64 mels x 65), no (d)")
    p.add_argument("--rounds", type=int, default=2, help="(b): interleaved rounds of cells (default 2)")
    p.add_argument("--clips", type=int, default=None, help="(a): clips per front-end (default 24; 6 with --quick)")
    p.add_argument("--frame-head", type=int, default=0, dest="frame_head", metavar="EPOCHS",
                   help="(e): also time a head cell of EPOCHS epochs on base-size encoder frames (1.6 GB on disk)")
    p.add_argument("--write-reports", action="store_true", dest="write_reports",
                   help="(d): write reports/frontends.md and reports/frontends-ua.md in the repo")
    args = p.parse_args(argv)
    with scratch("harness-bench-frontends-") as tmp:
        return run(args, tmp)


def run(args: argparse.Namespace, tmp: Path) -> int:
    import torch

    from harness.train.data import default_cache_dir, scan_data
    from harness.config import RunConfig

    print("\n".join(machine_lines()))
    root, label = corpus_root(tmp / "cache")
    print(f"corpus  : {label}")
    corpus = scan_data(RunConfig(data_root=str(root)))
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    notes = extraction_rates(corpus, args.clips or (6 if args.quick else 24), devices)
    share, lines = cached_share(corpus, default_cache_dir())
    notes += lines
    epochs = {"smallcnn": 2, "head": 2} if args.quick else {"smallcnn": 25, "head": 30}
    med, lines = cell_seconds(root, 1 if args.quick else args.rounds, epochs, f"sqlite:///{tmp / 'cells.db'}",
                              args.quick)
    notes += lines
    if args.frame_head:
        notes += frame_head_cell(corpus, root, default_cache_dir(), args.frame_head, f"sqlite:///{tmp / 'cells.db'}")
    if not args.quick:
        notes += accuracy(root, tmp, args.write_reports)
    ratios = [Ratio("(b) eGeMAPS + linear cell / SmallCNN cell", med["egemaps-linear"] / med["smallcnn"], CELL_GOAL),
              Ratio("(b) eGeMAPS + mlp cell / SmallCNN cell", med["egemaps-mlp"] / med["smallcnn"], CELL_GOAL),
              Ratio("(c) cached features / first extraction", share, CACHED_GOAL)]
    print_summary(ratios, notes)
    return 1 if args.check and not all(r.ok for r in ratios) else 0


if __name__ == "__main__":
    sys.exit(main())
