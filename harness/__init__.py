"""harness: a repeatable, statistically honest ablation workflow for speech
emotion recognition on RAVDESS (runner, Optuna study, report) on MLflow."""

__version__ = "0.1.0"
