"""The command line: bad input is one line on stderr and exit status 2, before any work."""
from __future__ import annotations

import subprocess
import sys
import wave

import numpy as np
import pytest

from harness.cli import main


def run_cli(*argv: str) -> tuple[int, str]:
    """`harness ...` in a process of its own (what a user runs): exit status and stderr."""
    p = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stderr


def run_main(capsys, *argv: str) -> tuple[int, str]:
    """The same through `harness.cli.main` in this process (a process start costs seconds of imports)."""
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    return rc, capsys.readouterr().err


def assert_one_line_error(result: tuple[int, str], *needles: str) -> None:
    rc, stderr = result
    assert rc == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for n in needles:
        assert n in lines[0], lines[0]


BAD_FLAGS = [
    (["--train_ratio", "0.9", "--val_ratio", "0.1"], ["--val_ratio", "< 1"]),
    (["--lr", "-1"], ["--lr", "> 0"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--batch_size", "0"], ["--batch_size"]),
    (["--focal_gamma", "-1"], ["--focal_gamma", ">= 0"]),
    (["--label_smoothing", "1"], ["--label_smoothing", "[0, 1)"]),
    (["--hop_length", "2048"], ["--hop_length", "n_fft"]),
    (["--model", "vgg"], ["--model", "invalid choice"]),
    (["--lr", "abc"], ["--lr"]),
]


@pytest.mark.parametrize("argv, needles", BAD_FLAGS)
def test_bad_flags_exit_2_with_one_line(argv, needles, capsys):
    assert_one_line_error(run_main(capsys, "train", *argv), *needles)


@pytest.mark.parametrize("argv, needles", [BAD_FLAGS[0], BAD_FLAGS[7]])  # a RunConfig check, an argparse one
def test_the_command_itself_exits_2_with_one_line_and_no_traceback(argv, needles):
    assert_one_line_error(run_cli("train", *argv), *needles)


def test_missing_data_root_is_named(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert_one_line_error(run_main(capsys, "train", "--data_root", str(missing)), str(missing), "does not exist")


def test_bad_corpora_are_named_before_any_run(tmp_path, capsys, tracking_uri, experiment):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["train", "--data_root", str(empty), "--tracking_uri", tracking_uri, "--experiment", experiment]) == 2
    assert "no known corpus layout" in capsys.readouterr().err

    bad = tmp_path / "badname" / "Actor_01"
    bad.mkdir(parents=True)
    (bad / "hello.wav").write_bytes(b"RIFF")
    assert main(["train", "--data_root", str(bad.parent), "--corpus", "ravdess", "--tracking_uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert "malformed RAVDESS file name" in err and "hello.wav" in err

    corrupt = tmp_path / "corrupt" / "Actor_01"
    corrupt.mkdir(parents=True)
    for i, name in enumerate(["03-01-01-01-01-01-01.wav", "03-01-03-01-01-01-01.wav"]):
        with wave.open(str(corrupt / name), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
            w.writeframes((np.zeros(16000) + i).astype(np.int16).tobytes())
    (corrupt / "03-01-05-01-01-01-01.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    for actor in (2, 3):  # enough actors that the split itself is fine
        d = corrupt.parent / f"Actor_0{actor}"
        d.mkdir()
        for f in corrupt.glob("03-01-0[13]*.wav"):
            (d / f.name.replace("-01.wav", f"-0{actor}.wav")).write_bytes(f.read_bytes())
    assert main(["train", "--data_root", str(corrupt.parent), "--tracking_uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert "cannot read audio file" in err and "03-01-05-01-01-01-01.wav" in err

    from harness import tracking
    assert tracking.client(tracking_uri).get_experiment_by_name(experiment) is None  # nothing was started


def test_a_split_without_actors_is_refused(synth_root, tmp_path, capsys):
    two = tmp_path / "two"
    for actor in ("Actor_01", "Actor_02"):
        (two / actor).mkdir(parents=True)
        for f in sorted((synth_root / actor).glob("*.wav"))[:5]:
            (two / actor / f.name).write_bytes(f.read_bytes())
    assert main(["train", "--data_root", str(two)]) == 2
    assert "leaves a set without speakers" in capsys.readouterr().err


def test_synth_writes_a_ravdess_layout(tmp_path):
    rc, stderr = run_cli("synth", str(tmp_path / "c"), "--actors", "2", "--seed", "3")
    assert rc == 0, stderr
    files = sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*.wav"))
    assert len(files) == 120
    assert files[0] == "Actor_01/03-01-01-01-01-01-01.wav" and files[-1] == "Actor_02/03-01-08-02-02-02-02.wav"


def test_train_runs_end_to_end_from_the_command_line(synth_root, tmp_path, tracking_uri, experiment, capsys):
    argv = ["train", "--data_root", str(synth_root), "--epochs", "1", "--n_mels", "32", "--batch_size", "64",
            "--train_ratio", "0.6", "--val_ratio", "0.2", "--class_weight_loss", "--device", "cpu",
            "--experiment", experiment, "--tracking_uri", tracking_uri, "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "test macro-F1" in out and (tmp_path / "out" / "best_model.pt").exists()
    from harness import tracking
    c = tracking.client(tracking_uri)
    (run,) = c.search_runs([c.get_experiment_by_name(experiment).experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["class_weight_loss"] == "True"


def test_a_bad_train_flag_is_answered_before_torch_mlflow_or_optuna_load():
    code = ("import sys; from harness.cli import main; rc = main(['train', '--cv_folds', '1']); "
            "print(rc, sorted(m for m in ('torch', 'mlflow', 'optuna') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split(None, 1) == ["2", "[]\n"], proc.stdout + proc.stderr
    assert "invalid --cv_folds" in proc.stderr
