"""Side by side: from a button press to the first sample of sound, three ways.

(a) the box: prompts rendered beforehand and preloaded, one output stream kept open
    (bench_runtime.press_latency: mock GPIO release -> pygame `Channel.play()`);
(b) synthesising on press: Piper loaded once, the prompt's text synthesised when pressed;
    time to the first audio chunk Piper yields (its first sentence);
(c) a player process per press: `aplay -q -D null <file>` spawned for a pre-rendered WAV of
    20 ms; time from spawn to the process's exit. With a 20 ms file writing the samples is
    negligible, so this is what a player process costs before (about when) its first sample
    reaches ALSA: fork/exec, ALSA configuration, opening the device, the WAV header. The null
    device does not play in real time, so playback length is not counted.

Each figure leaves out what all three share after it: the output buffer of the sound card
(≤ 23 ms at 512 samples, 22.05 kHz). Run: .venv/bin/python -m bench.bench_press
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

from bench import bench_runtime

PIPER_PRESSES = 15
APLAY_PRESSES = 100
BOX_PRESSES = 200


def stats(seconds: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in seconds)
    return {"n": len(ms), "median": statistics.median(ms), "p95": ms[min(len(ms) - 1, int(len(ms) * 0.95))],
            "max": ms[-1]}


def prompt_texts() -> dict[str, str]:
    from device.script import packaged_scripts_dir, parse_script

    path = packaged_scripts_dir() / "three-step-circle.yaml"
    script = parse_script(path.read_text(encoding="utf-8"), str(path)).script
    texts = {}
    for pid, parts in script.prompts().items():
        text = " ".join(p for p in parts if isinstance(p, str))
        if text:
            texts[pid] = text
    return texts


def piper_on_press(text: str, presses: int = PIPER_PRESSES) -> tuple[list[float], list[float], float]:
    """Piper loaded once (timed apart); per press: time to the first chunk, and to the whole prompt."""
    from piper import PiperVoice

    from audio.voices import find_voice

    voice_info = find_voice("en_US-joe-medium")
    t0 = time.perf_counter()
    voice = PiperVoice.load(voice_info.model_path, voice_info.config_path)
    load_s = time.perf_counter() - t0
    next(iter(voice.synthesize("Warm up.")))  # the first run of an onnx session is slower: not counted
    first, whole = [], []
    for _ in range(presses):
        t0 = time.perf_counter()
        chunks = iter(voice.synthesize(text))
        chunk = next(chunks)
        assert len(chunk.audio_int16_bytes) > 0
        first.append(time.perf_counter() - t0)
        for _chunk in chunks:
            pass
        whole.append(time.perf_counter() - t0)
    return first, whole, load_s


def aplay_per_press(presses: int = APLAY_PRESSES) -> list[float]:
    aplay = shutil.which("aplay")
    if aplay is None:
        raise RuntimeError("aplay not found (alsa-utils)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "short.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(22050)
            w.writeframes(b"\x00\x00" * 441)  # 20 ms
        subprocess.run([aplay, "-q", "-D", "null", str(path)], check=True)  # warm the page cache
        times = []
        for _ in range(presses):
            t0 = time.perf_counter()
            subprocess.run([aplay, "-q", "-D", "null", str(path)], check=True)
            times.append(time.perf_counter() - t0)
    return times


def main() -> int:
    bench_runtime.prepare()
    box = stats(bench_runtime.press_latency(BOX_PRESSES))
    texts = prompt_texts()
    short_id, long_id = "step:close-round", "step:welcome"
    piper_short, piper_short_whole, load_s = piper_on_press(texts[short_id])
    piper_long, piper_long_whole, _ = piper_on_press(texts[long_id], presses=5)
    ps, psw, pl, plw = stats(piper_short), stats(piper_short_whole), stats(piper_long), stats(piper_long_whole)
    ap = stats(aplay_per_press())

    def row(name: str, s: dict[str, float]) -> str:
        return (f"| {name} | {s['n']} | {s['median']:.2f} | {s['p95']:.2f} | {s['max']:.2f} | "
                f"{s['median'] / box['median']:.0f}× |")

    print("## Side by side: press to sound\n")
    print("`python -m bench.bench_press` on this machine (x86-64, 2 shared cores; a Pi 4 is several times")
    print("slower for Piper and for process start-up). Times in ms from the press; ratio of medians against")
    print("the box. None of them includes the sound card's output buffer, which all three pay after.\n")
    print("| path | presses | median | 95th | max | vs box |")
    print("|---|---|---|---|---|---|")
    print(row("(a) box: preloaded sound, open stream (press → `Channel.play()`)", box))
    print(row(f"(b) Piper on press, first chunk, short prompt `{short_id}` ({len(texts[short_id])} chars)", ps))
    print(row(f"(b) Piper on press, first chunk, long prompt `{long_id}` ({len(texts[long_id])} chars)", pl))
    print(row("(c) `aplay -D null` per press, spawn → exit (20 ms WAV)", ap))
    print()
    print(f"Piper also needs the voice loaded once beforehand ({load_s:.2f} s, not counted above), and the whole")
    print(f"prompt takes {psw['median'] / 1000:.2f} s (short) and {plw['median'] / 1000:.2f} s (long) to synthesise:")
    print("its first chunk is its first sentence, so a long first sentence waits longer. (c) counts only")
    print("starting a player; playing a real prompt through a new stream also pays the stream start,")
    print("which on an I2S amplifier is the pop the box's open stream avoids.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
