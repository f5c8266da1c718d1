"""Racing (`suite run --until-decided`): new repeats go only to rows still undecided, within a budget."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from harness import tracking
from harness.cli import main
from harness.suite import planning, racing
from harness.suite.file import load_suite
from harness.suite.runner import run_suite
from harness.train import run as training
from harness.train.data import scan_data


def write_race(path: Path, rows: dict, seeds=(0, 1), epochs: int = 1) -> Path:
    doc = {"name": path.stem, "seeds": list(seeds),
           "base": {"model": "smallcnn", "n_mels": 32, "epochs": epochs, "batch_size": 64, "train_ratio": 0.6,
                    "val_ratio": 0.2},
           "rows": [{"name": n, "config": cfg} for n, cfg in rows.items()]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cells_by_row(uri: str, experiment: str) -> dict[str, list[int]]:
    c = tracking.client(uri)
    exp = c.get_experiment_by_name(experiment)
    out: dict[str, list[int]] = {}
    for r in planning.search_runs(c, exp.experiment_id, "tags.`harness.kind` = 'cell' and attributes.status = 'FINISHED'"):
        out.setdefault(r.data.tags["harness.row"], []).append(int(r.data.tags["harness.seed"]))
    return {k: sorted(v) for k, v in out.items()}


# Known effects, without the noise of real training: each row's test macro-F1 is a fixed function of
# (row, seed). `better` beats the baseline by 0.10-0.11, `tie` stays within ±0.001 of it, `open` swings ±0.05
# around it, so its decision never comes. (Identical differences on every seed would decide nothing: a
# posterior without spread is not evidence.)
EFFECT = {"baseline": lambda s: 0.0, "better": lambda s: 0.1 + 0.01 * (s % 2), "tie": lambda s: 0.001 * (-1) ** s,
          "open": lambda s: 0.05 if s % 2 else -0.05}


@pytest.fixture
def known_effects(monkeypatch):
    real_run, real_score = training.run, training.score_test
    current = {}

    def run(cfg, *args, **kwargs):
        current["row"], current["seed"] = kwargs["extra_tags"]["harness.row"], cfg.seed
        return real_run(cfg, *args, **kwargs)

    def score(model, data, norm, device):
        out = real_score(model, data, norm, device)
        out["f1_macro"] = 0.5 + 0.01 * (current["seed"] % 3) + EFFECT[current["row"]](current["seed"])
        return out

    monkeypatch.setattr(training, "run", run)
    monkeypatch.setattr(training, "score_test", score)


@pytest.mark.slow
def test_decided_rows_get_no_new_cells_and_the_budget_is_never_exceeded(tmp_path, synth_root, tracking_uri,
                                                                          experiment, known_effects):
    path = write_race(tmp_path / "race.yaml", {r: {"lr": 0.002 + i * 1e-4} for i, r in enumerate(EFFECT)})
    kw = dict(data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False, out_dir=str(tmp_path / "art"),
              until_decided=True)
    first = run_suite(load_suite(path), budget=13, **kw)
    by_row = cells_by_row(tracking_uri, experiment)
    # 8 cells for the first seeds, 4 in round 1 (seed 2); round 2 would need 2 more: 14 > 13, so it stops
    assert first.done == sum(map(len, by_row.values())) == 12
    # decided after the third seed (P >= 0.99 needs it here): no more runs for them, ever
    assert by_row["better"] == [0, 1, 2] and by_row["tie"] == [0, 1, 2]
    assert by_row["open"] == by_row["baseline"] == [0, 1, 2]

    # A larger budget resumes the race: only the open row and its paired baseline get seed 3, after which the
    # open row is given up (±0.05 swings around 0: even unlimited repeats leave every probability < 0.99).
    second = run_suite(load_suite(path), budget=17, **kw)
    by_row = cells_by_row(tracking_uri, experiment)
    assert second.done == 2 and by_row["better"] == [0, 1, 2] and by_row["tie"] == [0, 1, 2]
    assert by_row["open"] == by_row["baseline"] == [0, 1, 2, 3]
    c = tracking.client(tracking_uri)
    exp_id = c.get_experiment_by_name(experiment).experiment_id
    fingerprint = scan_data(load_suite(path).rows[0].config.replace(data_root=str(synth_root))).fingerprint
    st = racing.standing(c, exp_id, load_suite(path).rows, "baseline", fingerprint)
    assert st.decisions == {"baseline": "baseline", "better": "better", "tie": "equivalent", "open": "undecidable"}
    # the parents say the seeds came from a sequential design
    parents = c.search_runs([exp_id], "tags.`harness.kind` = 'row'")
    assert all('"rounds": 2' in p.data.tags[racing.RACE_TAG] and '"budget": 17' in p.data.tags[racing.RACE_TAG]
               for p in parents)
    md = tmp_path / "race.md"
    assert main(["report", "--experiment", experiment, "--tracking_uri", tracking_uri, "--out", str(md)]) == 0
    assert "- seeds added: sequential (racing): seeds 0, 1 first, then 2 round(s)" in md.read_text()


def test_a_comparison_no_budget_can_decide_is_given_up():
    from harness.report.verdict import Evidence, answer

    def corrected(d, ratio=1 / 3):  # the corrected t's evidence on paired differences over single splits
        s2 = float(np.var(d, ddof=1))
        return Evidence(delta=float(np.mean(d)), floor_var=s2 * ratio, train_var=s2 / len(d), repeats=len(d),
                        df=len(d) - 1)
    swings = [0.05, -0.05, 0.05, -0.05]  # mean 0, but too noisy for |Δ| < 0.01 at P 0.99 even as J -> inf
    assert not answer(corrected(swings), rope=0.01, threshold=0.99).floor_decides
    steady = [0.11, 0.10, 0.12, 0.10]
    assert answer(corrected(steady), rope=0.01, threshold=0.99).floor_decides


@pytest.mark.parametrize("flags, needle", [
    (["--until-decided", "--budget", "0"], "invalid --budget 0"),
    (["--until-decided", "--budget", "-4"], "invalid --budget -4"),
    (["--budget", "10"], "--budget goes with --until-decided"),
    (["--until-decided", "--budget", "3"], "invalid --budget 3: the first seeds alone are 4 training runs"),
    (["--until-decided", "--seeds", "0"], "at least 2 starting seeds"),
    (["--until-decided", "--rows", "other"], "against the baseline row 'baseline': include it in --rows"),
    (["--until-decided", "--target-ci", "0.1", "--max-seeds", "5"], "two stopping rules"),
])
def test_bad_racing_flags_are_one_line_exit_2_before_any_run(tmp_path, synth_root, tracking_uri, experiment,
                                                             capsys, flags, needle):
    path = write_race(tmp_path / "bad.yaml", {"baseline": {}, "other": {"class_weight_loss": True}})
    assert main(["suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", tracking_uri,
                 "--experiment", experiment, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert tracking.client(tracking_uri).get_experiment_by_name(experiment) is None


def test_dry_run_prints_the_budgets_worst_case(tmp_path, synth_root, tracking_uri, experiment, capsys):
    path = write_race(tmp_path / "dry.yaml", {"baseline": {}, "other": {"class_weight_loss": True}})
    assert main(["suite", "run", str(path), "--data_root", str(synth_root), "--tracking_uri", tracking_uri,
                 "--experiment", experiment, "--until-decided", "--budget", "10", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--until-decided: at most 10 training runs in all (4 in the first seeds" in out and "6 more" in out


@pytest.mark.slow
def test_kill_9_mid_round_then_rerun_finishes_the_race_with_every_cell_once(tmp_path, synth_root):
    path = write_race(tmp_path / "kill.yaml", {"baseline": {}, "weighted": {"class_weight_loss": True}},
                      epochs=6)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [sys.executable, "-m", "harness", "suite", "run", str(path), "--data_root", str(synth_root),
            "--tracking_uri", uri, "--until-decided", "--budget", "8", "--out", str(tmp_path / "art")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.time() + 300
    for line in proc.stdout:  # kill inside the first racing round, once one of its cells is training
        seen.append(line)
        if "racing round 1" in line or time.time() > deadline:
            break
    if not any("racing round 1" in line for line in seen):  # decided at once: nothing to kill mid-round
        proc.wait()
        pytest.skip("the rows were decided after the first seeds: " + "".join(seen[-3:]))
    c = tracking.client(uri)
    while time.time() < deadline:
        running = planning.search_runs(c, c.get_experiment_by_name("kill").experiment_id,
                                       "attributes.status = 'RUNNING' and tags.`harness.kind` = 'cell'")
        if running:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    rerun = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    runs = planning.search_runs(c, c.get_experiment_by_name("kill").experiment_id, "tags.`harness.kind` = 'cell'")
    done = sorted((r.data.tags["harness.row"], int(r.data.tags["harness.seed"]))
                  for r in runs if r.info.status == "FINISHED")
    assert len(done) == len(set(done)) <= 8  # each cell once, within the budget
    assert {("baseline", 2), ("weighted", 2)} <= set(done)  # the interrupted round was finished
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert [r for r in runs if r.info.status == "KILLED"]


@pytest.mark.parametrize("repeats, said", [
    (2, "A 3rd repeat switches the default interval of the comparison from the speaker method"),
    (3, "On more than 2 repeats the default interval of the comparison is the corrected t (the speaker method's "
        "calibration missed there): a Δ half-width of ±"),
])
def test_a_race_that_adds_a_repeat_past_the_default_intervals_cap_says_the_method_switched(monkeypatch, repeats,
                                                                                             said):
    from types import SimpleNamespace

    import pandas as pd

    from harness.report import bottomline, repeat_cap
    from test_default_interval import cv_suite

    # racing's standing read from these cross-validated runs (the store's reading is tested elsewhere)
    sel, clips = cv_suite(repeats=repeats)
    monkeypatch.setattr(racing, "read_suite", lambda c, exp_id: (
        pd.DataFrame({"row": ["baseline", "variant"], "config_hash": ["h", "h"]}), pd.DataFrame({"fingerprint": []})))
    monkeypatch.setattr(racing, "select_cells", lambda parents, cells: sel)
    monkeypatch.setattr(racing, "has_repeats", lambda finished: True)
    monkeypatch.setattr(racing, "read_clips", lambda c, finished: clips)
    rows = [SimpleNamespace(name=n, config=SimpleNamespace(config_hash="h")) for n in ("baseline", "variant")]
    st = racing.standing(None, "0", rows, "baseline", "fp")
    lines = racing.summary_lines(st, rounds=repeats - 2, budget=64)
    # the report's bottom line on the same runs, word for word, cap included
    _, _, t = repeat_cap.default_table(sel, clips, "test_f1_macro", "baseline")
    assert lines[1] == st.bottom == bottomline.bottom_line(t, "baseline", "test_f1_macro", 0.01)
    assert said in lines[1]
