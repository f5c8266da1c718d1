"""Corpus adapters: each corpus's layout in one module, behind one registry.

`harness.corpora.load.load_corpus` reads one or several roots through their adapters into one
`Corpus` with speakers namespaced by corpus and labels in the shared vocabulary. Adding a corpus is
a module here with an `ADAPTER` and a line in `ADAPTERS` (and its layout in `harness.train.synth`).
"""
from __future__ import annotations

from harness.corpora import cremad, emodb, iemocap, manifest, ravdess, savee, tess, turev
from harness.corpora.base import Adapter

ADAPTERS: dict[str, Adapter] = {a.name: a for a in (
    ravdess.ADAPTER, cremad.ADAPTER, emodb.ADAPTER, savee.ADAPTER, tess.ADAPTER, iemocap.ADAPTER, turev.ADAPTER,
    manifest.ADAPTER)}
NAMES = tuple(ADAPTERS)
