"""Using a trained row: predict new audio with its models, score another corpus without retraining, and
serve the models through MLflow's model registry.

`sources` finds the runs (one run, or a suite row's runs) and their checkpoints; `inputs` turns a WAV,
a folder, a manifest or a labelled corpus into clips; `scoring` computes the features through the same
entry points training uses and averages the models' class probabilities; `evaluation` scores a labelled
corpus and logs it; `pyfunc` wraps a row's models as an MLflow pyfunc model; `command` (predict) and
`registry` (register) are the CLI.
"""
