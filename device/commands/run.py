"""`circlebox run` (the service on the Pi) and `circlebox fault-signal` (its OnFailure unit)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the box (the systemd service on the Pi)")
    p.set_defaults(handler=run)
    f = sub.add_parser("fault-signal", help="play the fault tone and light the fault LED (systemd OnFailure)")
    f.add_argument("--seconds", type=float, default=8.0)
    f.set_defaults(handler=fault_signal)


def run(args: argparse.Namespace) -> int:
    from device.commands import load_cli_config
    from device.config import ETC_CONFIG
    from device.content import ContentError
    from device.errors import UserFacingError
    from device.reloading import ConfigSource
    from device.runtime import Runtime
    from device.script import ScriptError

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    config = load_cli_config(args)
    # a reload reads the same layers as this start: --config (or /etc) and --data included
    etc = Path(args.config) if getattr(args, "config", None) else ETC_CONFIG
    runtime = Runtime(config, config_source=ConfigSource(lambda: load_cli_config(args), (etc,)))
    signal.signal(signal.SIGTERM, lambda *_: runtime.stop())  # systemd stop, even mid start-up
    try:
        runtime.start()
    except (ScriptError, ContentError) as exc:
        raise UserFacingError(f"no circle to run: {exc}") from exc
    signal.signal(signal.SIGHUP, lambda *_: runtime.box.post(runtime.reload))  # like the admin page's reload
    try:
        runtime.run()
    finally:
        runtime.close()
    return 0


def fault_signal(args: argparse.Namespace) -> int:
    """Never a silently dead box: the fault tone and a flickering LED, with no circle needed."""
    import time

    from device.commands import load_cli_config

    config = load_cli_config(args)
    try:
        from audio.bank import SoundBank
        from audio.speaker import PygameSpeaker

        bank = SoundBank(config.audio.sample_rate)
        bank.add_tones(["fault"])
        speaker = PygameSpeaker(config.audio.sample_rate, config.audio.buffer_samples, config.audio.driver)
        speaker.load(bank)
        speaker.set_volume(config.audio.volume_cap)
    except Exception as exc:  # no speaker either: the LED must do
        print(f"circlebox: fault tone unavailable: {exc}", file=sys.stderr)
        speaker = None
    leds = None
    try:
        from device.buttons import make_pin_factory
        from device.leds import StatusLeds

        leds = StatusLeds(config.leds.status, config.leds.help, make_pin_factory(config.buttons.pin_factory))
        leds.show("fault")
    except Exception as exc:
        print(f"circlebox: fault LED unavailable: {exc}", file=sys.stderr)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        if speaker is not None:
            speaker.play("bell:fault")
        time.sleep(2.0)
    return 1 if speaker is None and leds is None else 0
