"""One training run and what it stands on: the corpus and its splits (`data`), cached log-mel
features and augmentation (`features`), the networks (`models`), losses and sampling (`losses`),
one tracked run (`run`), a cross-validation repeat (`cv`), the synthetic corpus (`synth`)."""
