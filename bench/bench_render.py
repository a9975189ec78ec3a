"""Rendering benchmark: the default circle from an empty cache, a one-step edit, a no-op re-render,
the voice-file hash with and without its memo, and the runtime's SoundBank (load time, memory).

Run: .venv/bin/python -m bench.bench_render [--keep DIR]
Prints a markdown table; copy the figures into BENCHMARKS.md ("## Rendering").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from audio.cache import sha256_file
from audio.render import RenderResult, RenderSettings, render_script
from audio.voices import find_voice
from device.script import LoadedScript, find_script, parse_script

SCRIPT = "three-step-circle"
EDIT_FROM = "This circle is now closed."
EDIT_TO = "This circle is now closed. Go well."

BANK_PROBE = r"""
import json, resource, sys, time
def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
t0 = time.perf_counter()
from audio.bank import SoundBank
t1 = time.perf_counter()
before = rss_kb()
t2 = time.perf_counter()
bank = SoundBank.from_manifest(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t3 - t2, "sounds": len(bank),
                  "pcm_bytes": bank.nbytes(), "rss_before_kb": before, "rss_after_kb": rss_kb(),
                  "heavy": [m for m in ("piper", "onnxruntime") if m in sys.modules]}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="render into DIR (kept), not a temp dir")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-render-"))
    cache = work / "cache"
    if any(cache.glob("prompts/*.wav")):
        sys.exit(f"{cache} is not empty; the full render must start from an empty cache")
    settings = RenderSettings()
    path = find_script(SCRIPT, None)
    text = path.read_text(encoding="utf-8")
    loaded = parse_script(text, str(path), path)

    rows: list[tuple[str, ...]] = []

    def measure(label: str, script: LoadedScript) -> RenderResult:
        cpu = time.process_time()
        result = render_script(script, cache, settings=settings)
        cpu = time.process_time() - cpu
        count = len(result.rendered) + len(result.reused)
        per_s = result.rendered_seconds or float("nan")
        rows.append(
            (
                label,
                f"{len(result.rendered)}/{count}",
                f"{result.rendered_seconds:.1f}",
                f"{result.elapsed_s:.2f}",
                f"{cpu:.1f}",
                f"{result.elapsed_s / per_s:.3f}" if result.rendered else "-",
                f"{cpu / per_s:.3f}" if result.rendered else "-",
            )
        )
        return result

    full = measure("full render, empty cache", loaded)
    assert EDIT_FROM in text, "the default circle changed; update EDIT_FROM"
    edited = parse_script(text.replace(EDIT_FROM, EDIT_TO), str(path), path)
    one = measure("one step edited", edited)
    measure("nothing changed", edited)

    voice = find_voice(loaded.script.voice or "en_US-joe-medium")
    t0 = time.perf_counter()
    sha256_file(voice.model_path)
    cold_hash = time.perf_counter() - t0

    probe = subprocess.run(
        [sys.executable, "-c", BANK_PROBE, str(one.manifest_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    bank = json.loads(probe.stdout)

    prompts = len(full.rendered) + len(full.reused)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    print(f"Machine: {machine}, Python {platform.python_version()}")
    print(f"Script: {SCRIPT} ({full.audio_seconds:.1f} s of audio in {prompts} prompts)\n")
    print(
        "| render | prompts rendered | audio rendered (s) | wall (s) | CPU (s) "
        "| wall s per s of audio | CPU s per s of audio |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("| runtime sound bank | value |")
    print("|---|---|")
    print(f"| sounds (prompts + tones) | {bank['sounds']} |")
    print(f"| PCM in memory | {bank['pcm_bytes'] / 1e6:.1f} MB |")
    print(f"| import audio.bank | {bank['import_s'] * 1000:.0f} ms |")
    print(f"| SoundBank.from_manifest | {bank['load_s'] * 1000:.0f} ms |")
    growth = (bank["rss_after_kb"] - bank["rss_before_kb"]) / 1024
    print(f"| RSS growth from loading | {growth:.1f} MB |")
    print(f"| RSS after loading | {bank['rss_after_kb'] / 1024:.1f} MB |")
    print(f"| piper/onnxruntime imported | {', '.join(bank['heavy']) or 'no'} |")
    print()
    print(
        f"sha256 of the voice model ({voice.model_path.stat().st_size / 1e6:.0f} MB), no memo: "
        f"{cold_hash:.2f} s (memoised by size and mtime afterwards)"
    )
    print(f"\ncache: {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
