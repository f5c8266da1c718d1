"""A suite of heads on a frozen (tiny, random) encoder: `--dry-run` states the extraction apart
from the cells, the features are extracted once, a second run and a changed row reuse the cache,
and the report is made."""
from __future__ import annotations

from pathlib import Path

import yaml

from harness.suite.file import load_suite
from harness.suite.runner import run_suite
from harness.train.frontends import ssl


def write(path: Path, synth_root: Path, checkpoint: Path, lr: float = 0.01) -> Path:
    doc = {"name": "heads", "seeds": [0],
           "base": {"features": "wavlm_base", "model": "mlp", "encoder_checkpoint": str(checkpoint), "epochs": 2,
                    "batch_size": 32, "train_ratio": 0.6, "val_ratio": 0.2, "lr": lr},
           "rows": [{"name": "plain", "config": {}},
                    {"name": "cw-specaug", "config": {"class_weight_loss": True, "use_specaug": True,
                                                      "specaug_freq": 4, "specaug_time": 5}}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_head_suite_extracts_once_reuses_the_cache_and_reports(tmp_path, synth_root, tracking_uri, experiment,
                                                                 capsys, monkeypatch):
    from harness.cli import main

    ckpt = ssl.tiny_checkpoint("wavlm_base", tmp_path / "tiny.pt", seed=7)  # weights no other test has cached
    path = write(tmp_path / "heads.yaml", synth_root, ckpt)
    kw = dict(data_root=str(synth_root), tracking_uri=tracking_uri, experiment=experiment,
              storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False)
    run_suite(load_suite(path), dry_run=True, **kw)
    out = capsys.readouterr().out
    assert "front-end extraction, once before the cells: wavlm_base: 300 clips to extract once" in out

    first = run_suite(load_suite(path), out_dir=str(tmp_path / "art"), **kw)
    assert (first.done, first.failed) == (2, 0)

    def no_encoder(*a, **k):
        raise AssertionError("the encoder was loaded again")

    monkeypatch.setattr(ssl, "load_encoder", no_encoder)
    run_suite(load_suite(path), dry_run=True, **kw)
    assert "wavlm_base: cached for this corpus" in capsys.readouterr().out
    write(path, synth_root, ckpt, lr=0.003)  # a changed row trains again, on the cached frames
    again = run_suite(load_suite(path), out_dir=str(tmp_path / "art"), **kw)
    assert (again.done, again.failed) == (2, 0)

    report = tmp_path / "heads.md"
    assert main(["report", "--experiment", experiment, "--tracking_uri", tracking_uri, "--out", str(report)]) == 0
    text = report.read_text()
    assert "plain" in text and "cw-specaug" in text


def test_the_dry_run_states_one_extraction_per_front_end_and_data_a_row_reads(tmp_path, synth_root, tracking_uri,
                                                                               experiment, capsys):
    ckpt = ssl.tiny_checkpoint("wavlm_base", tmp_path / "tiny.pt", seed=8)
    path = write(tmp_path / "heads.yaml", synth_root, ckpt)
    doc = yaml.safe_load(path.read_text())
    doc["rows"].append({"name": "four-emotions", "config": {"labels": "angry,calm,happy,sad"}})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run_suite(load_suite(path), dry_run=True, data_root=str(synth_root), tracking_uri=tracking_uri,
              experiment=experiment, storage=f"sqlite:///{tmp_path / 'q.db'}", progress=False)
    out = capsys.readouterr().out
    # the first two rows read one corpus: one line for them; the filtered row reads fewer clips: its own line
    assert out.count("wavlm_base: 300 clips to extract once") == 1
    assert "wavlm_base: 160 clips to extract once" in out
