"""Part (d) of pipeline.py: a first feature pass per clip on audio as it comes, against RAVDESS.

Not a benchmark of its own (run `pipeline.py`, or `pipeline.py --first-pass-only`): this module
builds the cases and times them; pipeline.py prints the figures and holds the goal.

A first pass is what a first `harness train` on a corpus pays: `load_corpus` with a fresh cache
(SHA-1 of every file) + `compute_features` (decode, mono mix-down, resample from the clip's rate,
centre-cut or pad to CLIP_SECONDS, log-mel, save), in a fresh cache folder each time, imports done
before the clock. The cases:

    ravdess    the reference: RAVDESS as it comes (48 kHz, 3-5 s, a few stereo): every 4th clip of
               RAVDESS_ROOT (120 of the 480 of actors 1-8, all actors), linked into a RAVDESS
               folder and read through its adapter; else the synthetic RAVDESS layout written at
               48 kHz (2 actors, 120 clips)
    turev      TurEV-DB's clips (TUREV_ROOT: 44.1 kHz mono, 0.35-2.5 s), all of them; left out
               when unset
    16k-mono   synthetic clips at 16 kHz mono (EmoDB's, CREMA-D's rate), ~3.5 s
    44k-stereo synthetic clips at 44.1 kHz, two different channels, ~3.5 s
    0.3s       synthetic clips at 48 kHz cut to their central 0.3 s (the shortest lengths)
    10s        synthetic clips at 48 kHz tiled to 10 s (the longest)

The synthetic cases (120 clips each) are written with soundfile (PCM 16) from `harness synth`'s
clips and read through a manifest (`path, speaker, label`). Every file is read once before the
clock so that each case reads from the page cache alike, and one untimed pass warms torch's
kernels. A round runs the reference before and after every case (R, A, R, B, ..., R; the cases
in a rotated order each round), so each case is timed next to the reference and a burst of load
from other processes hits both alike; a case's figure is the median over rounds of (its s/clip /
the mean s/clip of the reference passes just before and after it). The same ratio in this
process's CPU seconds is printed beside it, as a check on the wall-clock one (no goal).
"""
from __future__ import annotations

import csv
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

SYNTH_ACTORS = 2  # x 60 clips: 120 clips per synthetic case
REFERENCE_EVERY = 4  # of RAVDESS_ROOT's clips: 120 of actors 1-8's 480, as many as a synthetic case


@dataclass(frozen=True)
class Case:
    name: str
    root: Path  # a corpus folder or a manifest CSV
    adapter: str
    what: str  # one line for the header: rate, channels, lengths


@dataclass(frozen=True)
class CaseTiming:
    case: Case
    n_clips: int
    per_clip_s: list[float]  # wall seconds per clip, one per pass
    ratios: list[float]  # per round: this case's s/clip / the mean of the reference passes beside it
    cpu_ratios: list[float]  # the same in this process's CPU seconds

    @property
    def median_ms(self) -> float:
        return 1000 * statistics.median(self.per_clip_s)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def cpu_ratio(self) -> float:
        return statistics.median(self.cpu_ratios)


def describe_audio(paths: list[Path]) -> str:
    """'48 kHz, 1-2 ch, 3.07-5.01 s' of a list of files (read from their headers)."""
    import soundfile as sf

    infos = [sf.info(str(p)) for p in paths]
    rates = sorted({i.samplerate for i in infos})
    chans = sorted({i.channels for i in infos})
    durs = [i.duration for i in infos]
    rate = ", ".join(f"{r / 1000:g} kHz" for r in rates)
    ch = f"{chans[0]} ch" if len(chans) == 1 else f"{chans[0]}-{chans[-1]} ch ({sum(i.channels > 1 for i in infos)} multi)"
    return f"{rate}, {ch}, {min(durs):.2f}-{max(durs):.2f} s"


def _write_manifest(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "speaker", "label"])
        w.writerows(rows)
    return path


def _derived_case(src_csv: Path, folder: Path, transform) -> Path:
    """Every clip of a synthetic manifest, transformed (samples, rate) -> samples and written as PCM 16
    under `folder`, with a manifest of its own."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with open(src_csv, newline="") as f:
        for r in csv.DictReader(f):
            y, rate = sf.read(str(src_csv.parent / r["path"]), dtype="float32")
            out = folder / Path(r["path"]).name.replace(".wav", f"-{r['speaker']}.wav")
            sf.write(str(out), np.clip(transform(y, rate), -1, 1), rate, subtype="PCM_16")
            rows.append((out.name, r["speaker"], r["label"]))
    return _write_manifest(folder, rows)


def _stereo(y, rate):
    import numpy as np

    # Two different channels (the second delayed 0.5 ms and quieter), so the mix-down is real work.
    return np.stack([y, 0.7 * np.roll(y, rate // 2000)], axis=1)


def _centre(seconds: float):
    def cut(y, rate):
        n = int(round(seconds * rate))
        start = (len(y) - n) // 2
        return y[start:start + n]
    return cut


def _tiled(seconds: float):
    def tile(y, rate):
        import numpy as np

        n = int(round(seconds * rate))
        return np.tile(y, -(-n // len(y)))[:n]
    return tile


def _linked_subset(root: Path, folder: Path, every: int) -> Path:
    """Every `every`th clip of a RAVDESS root, linked (same relative paths) under `folder`."""
    from harness.corpora.load import load_corpus

    for clip in load_corpus([root], ["ravdess"], None).clips[::every]:
        link = folder / clip.relpath
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(clip.path.resolve())
    return folder


def build_cases(tmp: Path) -> tuple[list[Case], list[str]]:
    """The reference first, then the others; and a note per case left out."""
    from harness.train.synth import generate_corpus

    cases, notes = [], []
    rav = os.environ.get("RAVDESS_ROOT")
    if rav:
        cases.append(Case("ravdess", _linked_subset(Path(rav).expanduser(), tmp / "ravdess", REFERENCE_EVERY),
                          "ravdess", f"every {REFERENCE_EVERY}th clip of RAVDESS_ROOT={rav} (real)"))
    else:
        root = generate_corpus(tmp / "ravdess-48k", n_actors=SYNTH_ACTORS, seed=0, sr=48000)
        cases.append(Case("ravdess", root, "ravdess", f"synthetic RAVDESS layout at 48 kHz, {SYNTH_ACTORS} actors "
                                                      "(RAVDESS_ROOT unset)"))
    tur = os.environ.get("TUREV_ROOT")
    if tur:
        cases.append(Case("turev", Path(tur).expanduser(), "turev", f"TUREV_ROOT={tur} (real)"))
    else:
        notes.append("turev: TUREV_ROOT unset, case left out")
    src = {sr: generate_corpus(tmp / f"synth-{sr}", n_actors=SYNTH_ACTORS, seed=1, sr=sr, layout="manifest")
           for sr in (16000, 44100, 48000)}
    identity = lambda y, rate: y  # noqa: E731
    for name, sr, transform in (("16k-mono", 16000, identity), ("44k-stereo", 44100, _stereo),
                                ("0.3s", 48000, _centre(0.3)), ("10s", 48000, _tiled(10.0))):
        csv_path = _derived_case(src[sr], tmp / "cases" / name, transform)
        cases.append(Case(name, csv_path, "manifest", "synthetic (harness synth, re-written)"))
    return cases, notes


def _first_pass(case: Case, cache: Path, feature_args: tuple[int, int, int, int]) -> tuple[int, float, float]:
    """(clips, wall seconds, this process's CPU seconds) of load_corpus + compute_features on a fresh cache."""
    from harness.corpora.load import load_corpus
    from harness.train.features import compute_features

    assert not cache.exists(), "a first pass needs a fresh cache"
    t0, c0 = time.perf_counter(), time.process_time()
    corpus = load_corpus([case.root], [case.adapter], cache)
    compute_features(corpus, *feature_args, cache)
    return len(corpus.clips), time.perf_counter() - t0, time.process_time() - c0


def warm_up(cases: list[Case], tmp: Path, feature_args: tuple[int, int, int, int]) -> dict[str, list[Path]]:
    """Untimed: every file's bytes read once (page cache), one full pass of the first case (torch's
    kernels, allocator). Returns each case's clip paths."""
    from harness.corpora.load import load_corpus

    paths = {}
    for c in cases:
        corpus = load_corpus([c.root], [c.adapter], None)
        paths[c.name] = [clip.path for clip in corpus.clips]
        for p in paths[c.name]:
            p.read_bytes()
    _first_pass(cases[0], tmp / "warm-up", feature_args)
    return paths


def time_cases(cases: list[Case], tmp: Path, feature_args: tuple[int, int, int, int], rounds: int,
               progress=print) -> list[CaseTiming]:
    """Per round: the reference before and after every other case (rotated order per round), each pass
    in a fresh cache. The reference's CaseTiming holds all its passes, its ratios are 1."""
    ref, others = cases[0], cases[1:]
    per_clip: dict[str, list[float]] = {c.name: [] for c in cases}
    ratios: dict[str, list[float]] = {c.name: [] for c in others}
    cpu_ratios: dict[str, list[float]] = {c.name: [] for c in others}
    n_clips: dict[str, int] = {}
    passes = 0

    def timed(c: Case) -> tuple[float, float]:
        nonlocal passes
        n, wall, cpu = _first_pass(c, tmp / f"cache-d-{passes}-{c.name}", feature_args)
        passes += 1
        n_clips[c.name] = n
        per_clip[c.name].append(wall / n)
        return wall / n, cpu / n

    for r in range(rounds):
        k = r % len(others) if others else 0
        before = timed(ref)
        for c in others[k:] + others[:k]:
            x = timed(c)
            after = timed(ref)
            ratios[c.name].append(x[0] / ((before[0] + after[0]) / 2))
            cpu_ratios[c.name].append(x[1] / ((before[1] + after[1]) / 2))
            before = after
        progress(f"    round {r + 1}: " + ", ".join(f"{c.name} {1000 * per_clip[c.name][-1]:.2f}" for c in others)
                 + f" ms/clip; ravdess {', '.join(f'{1000 * x:.2f}' for x in per_clip[ref.name][-len(others) - 1:])}")
    ones = [1.0] * len(per_clip[ref.name])
    return [CaseTiming(ref, n_clips[ref.name], per_clip[ref.name], ones, ones)] + \
        [CaseTiming(c, n_clips[c.name], per_clip[c.name], ratios[c.name], cpu_ratios[c.name]) for c in others]
