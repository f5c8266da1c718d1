"""A row's models as one MLflow pyfunc model: `mlflow.pyfunc.load_model` and `mlflow models serve` predict
with exactly the code `harness predict` runs.

The model's artifacts are the runs' checkpoints (and an encoder's weights), its code the `harness`
package itself (`code_paths`: MLflow puts it first on the path when the model loads, so a process
without harness installed loads it too). Input: a table with a column `path` (an audio file the
server can read), or columns `audio` (the samples, mono float) and `sample_rate`; output: one line per
input line, `label`, `prob_<class>` for each class, and `spread` (the standard deviation over the
models of the predicted class's probability). A model trained with `--normalize speaker` standardises
each `speaker` of the table by its own lines (at least `scoring.MIN_GROUP_CLIPS`), the whole table
where that column is absent.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import mlflow.pyfunc

SOURCE_FILE = "source.json"


def signature(classes):
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    inputs = Schema([ColSpec(DataType.string, "path", required=False),
                     ColSpec(Array(DataType.double), "audio", required=False),
                     ColSpec(DataType.long, "sample_rate", required=False),
                     ColSpec(DataType.string, "speaker", required=False)])
    outputs = Schema([ColSpec(DataType.string, "label"),
                      *(ColSpec(DataType.double, f"prob_{c}") for c in classes),
                      ColSpec(DataType.double, "spread")])
    return ModelSignature(inputs=inputs, outputs=outputs)


class HarnessModel(mlflow.pyfunc.PythonModel):
    """Holds nothing until `load_context`: the checkpoints travel as artifacts, not in the pickle."""

    def load_context(self, context) -> None:
        import torch

        from harness.predict import scoring

        meta = json.loads(Path(context.artifacts[SOURCE_FILE]).read_text())
        paths = [Path(context.artifacts[f"model_{i}"]) for i in range(meta["n_models"])]
        self.device = torch.device("cpu")
        self.ensemble = scoring.load(paths, meta["run_ids"], self.device)
        if "encoder" in context.artifacts:  # the weights travel with the model
            self.ensemble.cfg = self.ensemble.cfg.replace(encoder_checkpoint=context.artifacts["encoder"])
        self.meta = meta

    def predict(self, context, model_input, params=None):
        from harness.predict import scoring

        with tempfile.TemporaryDirectory(prefix="harness-serve-") as tmp:
            corpus = table_corpus(model_input, Path(tmp))
            scoring.check_groups(self.ensemble.cfg, corpus.clips, "the input table")
            # An encoder's frames go into a store on disk: a throwaway one; log-mel and functionals need none.
            cache = Path(tmp) / "cache" if self.ensemble.cfg.features not in ("logmel", "egemaps", "compare") else None
            mean, pred, spread = scoring.predict_corpus(self.ensemble, corpus, cache, self.device)
        out = scoring.frame([c.path for c in corpus.clips], self.ensemble.classes, mean, pred, spread, True)
        return out.drop(columns="path")


def table_corpus(table, tmp: Path):
    """The input lines as clips, in order: a `path` as it is, `audio` samples written to a WAV (float32,
    read back bit for bit) so that both go through the same reading and features."""
    import hashlib

    import numpy as np
    import pandas as pd
    import soundfile as sf

    from harness.corpora.base import Clip
    from harness.errors import HarnessError
    from harness.predict.inputs import SOURCE, corpus_of, readable

    table = pd.DataFrame(table)
    clips = []
    for i, line in enumerate(table.to_dict("records")):
        path = line.get("path")
        if isinstance(path, str) and path:
            p = Path(path)
        else:
            audio, rate = line.get("audio"), line.get("sample_rate")
            if audio is None or rate is None or (isinstance(rate, float) and np.isnan(rate)):
                raise HarnessError(f"input line {i}: expected a 'path', or 'audio' samples and their 'sample_rate'")
            p = tmp / f"line{i:06d}.wav"
            sf.write(p, np.asarray(audio, dtype=np.float32), int(rate), subtype="FLOAT")
        problem = readable(p)
        if problem:
            raise HarnessError(f"input line {i}: {problem}")
        speaker = line.get("speaker") if isinstance(line.get("speaker"), str) else ""
        clips.append(Clip(path=p, relpath=p.name, corpus=SOURCE, speaker=f"{SOURCE}:{speaker}", label="",
                          sha1=hashlib.sha1(p.read_bytes()).hexdigest()))
    if not clips:
        raise HarnessError("no input lines: expected a table with a column path, or columns audio and sample_rate")
    return corpus_of(clips, tmp)
