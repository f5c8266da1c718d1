"""A 24-speaker stand-in for the full corpus, from RAVDESS actors 01-08: as recorded (01-08), re-voiced 12%
higher and faster (09-16) and 11% lower and slower (17-24), mono 22050 Hz; parity (gender) is kept. It is 24
speaker IDs but 8 people, and speaker-grouped folds do not keep a person's voices together: optimistic. Used for
docs/statistics.md "What to expect on 24 speakers" (with experiments/six_rows.yaml).

    .venv/bin/python scripts/revoice24.py SRC DST      # SRC: a folder with Actor_01 .. Actor_08
"""
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

if len(sys.argv) != 3 or not all((Path(sys.argv[1]) / f"Actor_{a:02d}").is_dir() for a in range(1, 9)):
    print("usage: revoice24.py SRC DST  (SRC must hold Actor_01 .. Actor_08)", file=sys.stderr)
    sys.exit(2)
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
SR = 22050
for offset, (up, down) in ((0, (1, 1)), (8, (25, 28)), (16, (28, 25))):  # 28/25 = 1.12 faster; 25/28 slower
    for a in range(1, 9):
        out = dst / f"Actor_{a + offset:02d}"
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted((src / f"Actor_{a:02d}").glob("*.wav")):
            y, sr = sf.read(f, always_2d=True)
            y = y.mean(axis=1)
            y = resample_poly(y, SR * up, sr * down)  # fewer samples played at SR: higher and faster
            parts = f.stem.split("-")
            parts[-1] = f"{a + offset:02d}"
            sf.write(out / ("-".join(parts) + ".wav"), y.astype(np.float32), SR, subtype="PCM_16")
print("wrote", sum(1 for _ in dst.glob("Actor_*/*.wav")), "clips")
