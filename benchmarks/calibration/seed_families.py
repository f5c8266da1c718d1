"""New A/A rows on the populations of a saved calibration run: is what its repeats share a property of the
design, or of one pair of seed families?

benchmarks/calibration/calibration.py's aa row is the plain recipe trained with the repeat's seed + 500000. On the
24-speaker 4-repeat setting its repeats' Δ correlated within a population in two fresh runs (+0.11, +0.13),
which independent seeds rule out. This trains the plain recipe again with other offsets (seed + offset, the
repeat's folds and validation speakers unchanged) on the same populations, regenerated from their corpus
seeds, so every row's repeats can be compared with every other's:
- a two-way ANOVA per population (rows × repeats, repeats crossed with rows: each repeat is one fold deal)
  pooled over populations, F = MS_rows / MS_rows×repeats, its p from permuting the rows within each
  (population, repeat), exact under the null that the rows are one recipe with exchangeable seeds;
- per pair of rows, Var(Δ̂)/mean(s²_r/R) (1 when the repeats are independent) with a sign-flip p (each
  repeat's Δ flipped at random: exact under the same null);
- per pair, and for ep3 against each A/A row, the variance of the population's own Δ (Var(Δ̂) − mean(s²_r)/R)
  with a percentile-bootstrap interval over populations: 0 for an A/A pair, the effect's spread over
  populations for ep3.

    python benchmarks/calibration/seed_families.py --run DIR --seed S --save DIR2 [--offsets 100000,200000] [--workers 2]
    python benchmarks/calibration/seed_families.py --run DIR --families DIR2      # the figures, no training

DIR: a calibration.py `--save` folder (its plain, aa and ep3 predictions); S: that run's `--seed`. About 80 s
of training per population per worker on the 2-core VM (2 offsets x 16 fold models).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
for p in (str(HERE.parent.parent), str(HERE.parent), str(HERE)):  # the repo, benchmarks/, this folder
    if p not in sys.path:
        sys.path.insert(0, p)

from calibration import AA_SEED, SETTINGS, base_config, corpus_seed  # noqa: E402
from common import load_average, machine_lines, scratch  # noqa: E402

PERMUTATIONS = 5000
META = "seed-families.json"
_ARGS: dict = {}


def _init(args: dict) -> None:
    import torch

    torch.set_num_threads(1)  # as calibration.py: the numbers depend on it
    _ARGS.update(args)


def train_population(rep: int) -> int:
    """The plain recipe with each offset's seeds on population `rep`, as calibration.py trained its rows."""
    import os
    import shutil

    from harness.train.run import fit, prepare, resolve_device, score_test
    from harness.train.synth import generate_corpus

    a = _ARGS
    s = SETTINGS[a["setting"]]
    out = Path(a["save"]) / f"{a['setting']}-{rep:03d}-families.csv.gz"
    if out.exists():
        return rep
    tmp = Path(a["tmp"]) / f"pop-{rep}"
    os.environ["HARNESS_CACHE"] = str(tmp / "cache")
    roots = [str(generate_corpus(tmp / f"corpus-{i}", n_actors=n, seed=corpus_seed(a["seed"], a["setting"], rep, i),
                                 layout=layout)) for i, (layout, n) in enumerate(zip(s.layouts, s.actors))]
    base = base_config(s, roots, a["epochs"])
    device = resolve_device("cpu")
    lines = []
    for r in range(s.repeats):
        seed = 1000 * rep + r  # calibration.py's repeat seed: its fold deal and validation speakers
        for f in range(s.k):
            cfg = base.replace(seed=seed, fold=f)
            data = prepare(cfg)
            test = [data.corpus.clips[i] for i in data.split.test]
            for o in a["offsets"]:
                res = fit(cfg.replace(seed=seed + o), data, device=device)
                got = score_test(res.model, data, res.norm, device)
                lines.append(pd.DataFrame({"row": f"s{o}", "repeat": r, "fold": f, "clip": [c.relpath for c in test],
                                           "true": [data.classes[int(t)] for t in data.labels[data.split.test]],
                                           "pred": [data.classes[int(p)] for p in got["pred"]]}))
    part = out.with_suffix(".part")
    pd.concat(lines, ignore_index=True).to_csv(part, index=False, compression="gzip")
    part.rename(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return rep


# --- the figures -----------------------------------------------------------------------------------------

def pooled_f1(run: Path, families: Path, setting: str) -> tuple[list[str], np.ndarray, list[int]]:
    """Rows, and per population a rows × repeats table of each repeat's pooled macro-F1."""
    from harness import metrics

    tables, reps, rows = [], [], None
    for f in sorted(families.glob(f"{setting}-*-families.csv.gz")):
        rep = int(f.name.split("-")[1])
        saved = run / f"{setting}-{rep:03d}-predictions.csv.gz"
        if not saved.exists():
            continue
        d = pd.concat([pd.read_csv(saved, dtype=str), pd.read_csv(f, dtype=str)], ignore_index=True)
        d["repeat"] = d["repeat"].astype(int)
        names = sorted(set(d["row"]) - {"ep3"}, key=lambda n: (n != "plain", n != "aa", n))
        names += ["ep3"] if "ep3" in set(d["row"]) else []
        if rows is not None and names != rows:
            raise SystemExit(f"{f}: rows {names}, but the populations before it have {rows}")
        rows = names
        if d.groupby("row")["repeat"].nunique().nunique() > 1:
            raise SystemExit(f"{f} with {saved.name}: the rows do not have the same repeats")
        classes = sorted(set(d["true"]))
        t = np.array([[metrics.scores_of(metrics.confusion(list(g["true"]), list(g["pred"]), classes))["f1_macro"]
                       for _, g in d[d["row"] == row].groupby("repeat")] for row in rows])
        tables.append(t)
        reps.append(rep)
    return rows or [], np.array(tables), reps


def anova_f(y: np.ndarray) -> tuple[float, float, float]:
    """F = MS_rows / MS_interaction of populations' rows × repeats tables, pooled; and both mean squares."""
    P, A, R = y.shape
    rm, cm, gm = y.mean(2, keepdims=True), y.mean(1, keepdims=True), y.mean((1, 2), keepdims=True)
    ms_row = float((R * (rm - gm) ** 2).sum() / (P * (A - 1)))
    ms_int = float(((y - rm - cm + gm) ** 2).sum() / (P * (A - 1) * (R - 1)))
    return ms_row / ms_int, ms_row, ms_int


def repeat_ratio(x: np.ndarray) -> float:
    """Var(Δ̂)/mean(s²_r/R) of per-population repeats' Δ (populations × repeats)."""
    R = x.shape[1]
    return float(x.mean(1).var(ddof=1) / (x.var(1, ddof=1).mean() / R))


def own_variance(x: np.ndarray) -> float:
    R = x.shape[1]
    return float(x.mean(1).var(ddof=1) - x.var(1, ddof=1).mean() / R)


def figures(rows: list[str], y: np.ndarray, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    aa_rows = [i for i, r in enumerate(rows) if r != "ep3"]
    a = y[:, aa_rows]
    f, ms_row, ms_int = anova_f(a)
    perm = np.array([anova_f(np.take_along_axis(a, np.argsort(rng.random(a.shape), axis=1), axis=1))[0]
                     for _ in range(PERMUTATIONS)])
    R = y.shape[2]
    out = [f"{len(y)} populations, {R} repeats, A/A rows {', '.join(rows[i] for i in aa_rows)}: F {f:.3f} "
           f"(permutation p {(1 + np.sum(perm >= f)) / (1 + PERMUTATIONS):.4f}); a row's own persistent part (MS_rows − MS_int)/R "
           f"{(ms_row - ms_int) / R:+.2e} against the repeats' {ms_int / R:.2e}"]
    pairs = [(i, j) for k, i in enumerate(aa_rows) for j in aa_rows[:k]]
    pairs += [(rows.index("ep3"), j) for j in aa_rows] if "ep3" in rows else []
    for i, j in pairs:
        x = y[:, i] - y[:, j]
        r = repeat_ratio(x)
        flips = np.array([repeat_ratio(x * rng.choice([-1.0, 1.0], size=x.shape)) for _ in range(PERMUTATIONS)])
        boot = [own_variance(x[rng.integers(0, len(x), len(x))]) for _ in range(PERMUTATIONS)]
        null = "" if rows[i] == "ep3" else f", sign-flip p {(1 + np.sum(flips >= r)) / (1 + PERMUTATIONS):.4f}"
        out.append(f"  {rows[i]} − {rows[j]}: mean Δ̂ {x.mean():+.4f}; Var(Δ̂)/mean(s²_r/R) {r:.3f}{null}; "
                   f"the population's own variance {own_variance(x):+.2e} "
                   f"[{np.percentile(boot, 2.5):+.2e}, {np.percentile(boot, 97.5):+.2e}]")
    new = [i for i in aa_rows if rows[i] not in ("plain", "aa")]
    if "ep3" in rows and new:  # a baseline apart from the run's own A/A pair: the new rows' mean
        x = y[:, rows.index("ep3")] - y[:, new].mean(axis=1)
        boot = [own_variance(x[rng.integers(0, len(x), len(x))]) for _ in range(PERMUTATIONS)]
        out.append(f"  ep3 − mean({', '.join(rows[i] for i in new)}): mean Δ̂ {x.mean():+.4f}; the population's own "
                   f"variance {own_variance(x):+.2e} [{np.percentile(boot, 2.5):+.2e}, {np.percentile(boot, 97.5):+.2e}]")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, required=True, help="a calibration.py --save folder")
    ap.add_argument("--setting", default="ravdess24_r4", help="its cross-validated setting (default ravdess24_r4)")
    ap.add_argument("--seed", type=int, help="the run's --seed (to regenerate its populations); with --save")
    ap.add_argument("--offsets", default="100000,200000", help="seed offsets of the new A/A rows")
    ap.add_argument("--epochs", type=int, default=2, help="the run's --epochs (default 2)")
    ap.add_argument("--workers", type=int, default=2)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path, help="train the new rows into this folder (populations done are kept)")
    g.add_argument("--families", type=Path, help="no training: the figures from a --save folder")
    args = ap.parse_args(argv)
    s = SETTINGS.get(args.setting)
    try:
        offsets = [int(o) for o in args.offsets.split(",") if o]
    except ValueError:
        ap.error(f"--offsets: integers separated by commas, got {args.offsets!r}")
    if len(set(offsets)) < len(offsets) or any(o <= 0 for o in offsets):
        ap.error(f"--offsets: distinct positive integers, got {args.offsets!r}")
    if args.workers < 1 or args.epochs < 1:
        ap.error("--workers and --epochs: at least 1")
    if s is None or s.cross:
        ap.error(f"--setting: a cross-validated setting of calibration.py, got {args.setting!r}")
    if not args.run.is_dir():
        ap.error(f"--run: no folder {args.run}")
    if args.save and (args.seed is None or not offsets or any(o in (0, AA_SEED) for o in offsets)):
        ap.error("--save needs --seed and offsets other than 0 and 500000 (the run's plain and aa rows)")
    reps = sorted(int(f.name.split("-")[1]) for f in args.run.glob(f"{args.setting}-*-predictions.csv.gz"))
    for line in machine_lines():
        print(line)
    t0 = time.perf_counter()
    if args.save:
        import multiprocessing as mp

        args.save.mkdir(parents=True, exist_ok=True)
        # the folder remembers what trained it: a wrong --seed would train the rows on other populations
        meta = {"run": str(args.run.resolve()), "setting": args.setting, "seed": args.seed, "epochs": args.epochs,
                "offsets": offsets}
        kept = args.save / META
        if kept.exists() and json.loads(kept.read_text()) != meta:
            ap.error(f"--save: {args.save} was trained with {kept.read_text().strip()}, not {json.dumps(meta)}")
        kept.write_text(json.dumps(meta) + "\n")
        print(f"training offsets {offsets} on {len(reps)} populations of {args.setting}, load {load_average()}")
        with scratch("harness-seed-families-") as tmp:
            shared = {"setting": args.setting, "seed": args.seed, "offsets": offsets, "epochs": args.epochs,
                      "save": str(args.save), "tmp": str(tmp)}
            with mp.get_context("spawn").Pool(args.workers, initializer=_init, initargs=(shared,)) as pool:
                for i, rep in enumerate(pool.imap_unordered(train_population, reps), 1):
                    print(f"  population {rep} ({i}/{len(reps)}, {time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"wall {time.perf_counter() - t0:.0f} s; {args.workers} worker(s)")
        return 0
    kept = args.families / META
    if not kept.exists():
        ap.error(f"--families: no {META} in {args.families} (not a --save folder of this script)")
    meta = json.loads(kept.read_text())
    if meta["setting"] != args.setting or Path(meta["run"]) != args.run.resolve():
        ap.error(f"--families: trained for {meta['run']} ({meta['setting']}), not {args.run} ({args.setting})")
    print(f"rows trained with --seed {meta['seed']} --epochs {meta['epochs']} --offsets "
          f"{','.join(map(str, meta['offsets']))}")
    rows, y, done = pooled_f1(args.run, args.families, args.setting)
    if len(done) < 3:
        ap.error(f"--families: fewer than 3 populations of {args.setting} in both folders")
    print("\n".join(figures(rows, y)))
    print(f"wall {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
