"""`harness study run|confirm`: a study file (`file`), the Optuna search and `confirm` (`search`),
what a study found, on its MLflow run (`results`)."""
