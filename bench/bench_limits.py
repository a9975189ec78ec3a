"""Limits on hostile input to the parsers (issue 12): time and memory before and after.

    .venv/bin/python -m bench.bench_limits            # every measure
    .venv/bin/python -m bench.bench_limits --skip-old # only the current code (the old ways take
                                                      # a minute and 3 GB of memory)

- the editor's `[pause` marker on an unclosed `[pause` and 3,000 spaces (old pattern vs now);
- a circle with 40,000 unknown keys (parse_script; the old figure is from the tree before the fix);
- the growth of a process's peak memory while a 0.67 MB FLAC of one hour is refused (whole
  decode to float64, the old way, vs audio.recording.decode_mono).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OLD_MARKER = re.compile(r"\[(pause|recording)\s+([^\]]+?)\s*\]", re.IGNORECASE)  # before issue 12


def one_hour_flac(path: Path) -> Path:
    """One hour of 48 kHz stereo square tone, 0.67 MB of FLAC (constant blocks compress to ~nothing)."""
    import numpy as np
    import soundfile

    rate, block = 48_000, 4096
    chunk = np.where((np.arange(block * 120) // block) % 2 == 0, 0.25, -0.25).astype(np.float32)
    stereo = np.stack([chunk, chunk], axis=1)
    total, done = rate * 3600, 0
    with soundfile.SoundFile(str(path), "w", rate, 2, format="FLAC") as sound:
        while done < total:
            take = min(len(stereo), total - done)
            sound.write(stereo[:take])
            done += take
    return path


_CHILD = """
import io, resource, sys
def peak_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
data = open(sys.argv[1], "rb").read()
import numpy, soundfile, soxr
from audio.recording import decode_mono, RecordingError
start = peak_mb()
try:
    if sys.argv[2] == "old":
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
        outcome = f"decoded {samples.shape[0] / rate / 60:.0f} min, then refused by length"
    else:
        decode_mono(io.BytesIO(data), 22050)
        outcome = "accepted"
except RecordingError as exc:
    outcome = f"refused: {exc}"
print(f"{peak_mb() - start:.0f}|{outcome}")
"""


def rss_growth_mb(flac: Path, way: str) -> tuple[float, str]:
    """Peak-memory growth of a fresh process while it handles `flac` the `way` ("old"/"new")."""
    repo = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(flac), way],
        capture_output=True, text=True, cwd=repo, timeout=600, check=True,
    ).stdout.strip()
    growth, outcome = out.split("|", 1)
    return float(growth), outcome


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-old", action="store_true", help="measure only the current code")
    args = parser.parse_args()

    from device.script import ScriptError, parse_script
    from local_admin.store import text_to_parts

    marker_text = "[pause" + " " * 3000
    if not args.skip_old:
        print(f"marker, 3,000 spaces, old pattern: {timed(lambda: list(OLD_MARKER.finditer(marker_text))):.2f} s")
    print(f"marker, 3,000 spaces, now:         {timed(lambda: text_to_parts(marker_text)) * 1000:.2f} ms")

    keys = "".join(f"k{i}: 1\n" for i in range(40_000))
    circle = "script: x\nversion: 1\nlanguage: en\nvoice: v\nsteps:\n  - id: a\n    say: hi\n" + keys

    def parse() -> None:
        try:
            parse_script(circle, "bench")
        except ScriptError as exc:
            print(f"  ({exc.problems[0][:90]})")

    print(f"circle with 40,000 unknown keys, now: {timed(parse):.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        flac = one_hour_flac(Path(tmp) / "hour.flac")
        print(f"FLAC bomb: {flac.stat().st_size / 1e6:.2f} MB, one hour, 48 kHz stereo")
        for way in (("new",) if args.skip_old else ("old", "new")):
            growth, outcome = rss_growth_mb(flac, way)
            print(f"  {way}: peak memory +{growth:.0f} MB; {outcome[:100]}")


if __name__ == "__main__":
    main()
