"""`circlebox demo`: the box on a laptop. Keys are the buttons; the real voice; the speaker or a WAV.

What the box does is printed in words on each key (device/demo_words.py), since a laptop has no
status light; the sound libraries' own chatter is kept off the terminal (audio/library_noise.py).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import wave
from pathlib import Path

DEFAULT_DEMO_DATA = Path(".circlebox")
DEFAULT_WAV = Path("circlebox-demo.wav")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the box on this machine: keyboard buttons, real voice")
    p.add_argument("--script", help="circle to run (default: the configured one)")
    p.add_argument("--audio-out", type=Path, help="write what the box plays to this WAV instead of the speaker")
    p.add_argument("--no-admin", action="store_true", help="do not start the admin page beside the box")
    p.add_argument("--admin-port", type=int, default=8080)
    p.set_defaults(handler=run)


def say(text: str) -> None:
    """A line for the person at the keyboard (flushed: they read it as it happens)."""
    print(text, flush=True)


def circlebox_command() -> list[str]:
    """How to run this same circlebox again: `circlebox` if that is what PATH finds, else its path
    (`make demo` runs .venv/bin/circlebox, which is not on PATH), else `python -m device.cli`."""
    me = Path(sys.argv[0])
    on_path = shutil.which("circlebox")
    if me.name == "circlebox" and me.exists():
        if on_path and Path(on_path).resolve() == me.resolve():
            return ["circlebox"]
        return [str(me.absolute())]
    return [sys.executable, "-m", "device.cli"]


def _open_speaker(config, audio_out: Path | None):  # -> (speaker, raw file or None)
    from audio.speaker import NoAudioDevice, PygameSpeaker

    audio = config.audio
    if audio_out is None:
        try:
            return PygameSpeaker(audio.sample_rate, audio.buffer_samples, audio.driver), None
        except NoAudioDevice as exc:
            print(f"No sound card here ({exc}).\nWriting what the box plays to {DEFAULT_WAV} instead.",
                  file=sys.stderr)
            audio_out = DEFAULT_WAV
    raw = Path(tempfile.mkstemp(prefix="circlebox-demo-", suffix=".raw")[1])
    os.environ["SDL_DISKAUDIOFILE"] = str(raw)
    speaker = PygameSpeaker(audio.sample_rate, audio.buffer_samples, "disk")
    return speaker, (raw, audio_out)


def _raw_to_wav(raw: Path, wav_path: Path, rate: int) -> None:
    with wave.open(str(wav_path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(raw.read_bytes())
    raw.unlink()


def run(args: argparse.Namespace) -> int:
    from device.buttons import make_pin_factory
    from device.commands import load_cli_config
    from device.content import ContentError, cache_dir, ensure_rendered, resolve_script
    from device.demo_words import Narrator, describe_status
    from device.errors import UserFacingError
    from device.keyboard import KeyboardButtons, key_help
    from device.runtime import Runtime
    from device.script import ScriptError

    if not args.data and not os.environ.get("CIRCLEBOX_PATHS__DATA_DIR"):
        args.data = str(DEFAULT_DEMO_DATA)
    overrides = {"session__script": args.script} if args.script else {}
    config = load_cli_config(args, **overrides)
    try:
        loaded = resolve_script(config.session.script, config.data_dir)
        say(f"Circle: {loaded.script.title or loaded.script.script}. Checking its rendered prompts "
            "(the first time, the offline voice renders them: a minute or two)...")
        ensure_rendered(loaded, cache_dir(config.data_dir), voices_dir=config.voice_dirs,
                        sample_rate=config.audio.sample_rate, loudness_lufs=config.audio.loudness_lufs,
                        system_voice=config.audio.system_voice, button_names=[b.name for b in config.buttons.map],
                        quiet=False)
    except (ScriptError, ContentError) as exc:
        raise UserFacingError(str(exc)) from exc
    except LookupError as exc:
        raise UserFacingError(str(exc.args[0] if exc.args else exc)) from exc

    speaker, wav_target = _open_speaker(config, args.audio_out)
    factory = make_pin_factory("mock")
    narrator = Narrator(say, lambda: runtime.circle.loaded.script if runtime.circle else None)
    runtime = Runtime(config, pin_factory=factory, speaker=speaker, log_sinks=[narrator])
    runtime.start()
    narrator.end_of_press = runtime.box.post  # a press's line is printed once the box has handled it
    admin = None if args.no_admin else _start_admin(args, config)

    hold_s = config.buttons.hold_s

    def press_pin(name: str, long: bool) -> None:
        if runtime.buttons is None or name not in runtime.buttons.devices:
            say(f"The box has no '{name}' button in its button map (buttons.map in the config).")
            return
        pin = runtime.buttons.pin(name)
        pin.drive_low()
        threading.Timer(hold_s + 0.2 if long else 0.05, pin.drive_high).start()

    def show_status() -> None:
        # on the box's thread, after the keys typed before it: never a status older than them
        runtime.box.post(lambda: say(f"Status: {describe_status(runtime.current_status())}"))

    say(key_help(config.buttons.map))
    say("Press n to begin.")
    KeyboardButtons(press_pin, runtime.box.dispatch, runtime.stop, show_status,
                    lambda: [s.id for s in runtime.circle.loaded.script.steps], say=say).start()
    try:
        runtime.run()
    except KeyboardInterrupt:
        pass
    finally:
        runtime.close()
        if admin is not None:
            admin.terminate()
        if wav_target is not None:
            _raw_to_wav(wav_target[0], wav_target[1], config.audio.sample_rate)
            say(f"Wrote what the box played to {wav_target[1]}")
    return 0


def _start_admin(args: argparse.Namespace, config):  # -> Popen | None
    try:
        import local_admin.app  # noqa: F401
    except ImportError:
        return None
    data = ["--data", str(Path(config.data_dir).absolute())]
    cmd = [*circlebox_command(), *data, "admin", "--host", "127.0.0.1", "--port", str(args.admin_port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    setup_code = shlex.join([*circlebox_command(), *data, "setup-code"])
    say(f"Admin page: http://127.0.0.1:{args.admin_port}/  (its setup code, in another terminal: {setup_code})")
    return proc
