"""`circlebox doctor [--simulate]`: the technician's self-test (see device/doctor.py).

On the box (as root): if the runtime is running and idle, its service is stopped for the test (it
owns the buttons and lights) and started again at the end; then follow what the box says.

With `--simulate` it runs here: SDL's disk driver stands in for the speaker (the doctor checks
the tone and the prompt sample for sample), MockFactory pins for the buttons and lights with a
scripted technician who presses each button when asked, and `--mic ROOM.wav` for the
microphone. Exit code 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="self-test: speaker, microphone, buttons, lights, voices, disk, SD card, clock, config",
        description="Walk through every part of the box and end with PASS or FAIL and a JSON report.",
    )
    p.add_argument("--simulate", action="store_true",
                   help="run here: disk audio driver, mock pins pressed by a scripted technician")
    p.add_argument("--mic", type=Path, metavar="ROOM.wav",
                   help="with --simulate: a recording to use as the microphone (someone talking)")
    p.add_argument("--report", type=Path, metavar="PATH",
                   help="where to write the JSON report (default <data>/reports/doctor-<time>.json; "
                        "none when the data folder does not exist yet)")
    p.add_argument("--button-timeout", type=float, metavar="S",
                   help="seconds to wait for each button (default 15; 3 with --simulate)")
    p.add_argument("--confirm-timeout", type=float, default=20.0, metavar="S",
                   help="seconds to wait for NEXT when asked 'did you hear/see it?' (default 20)")
    p.add_argument("--mic-seconds", type=float, default=10.0, metavar="S",
                   help="longest time to listen for speech (default 10)")
    p.add_argument("--kernel-log", type=Path, metavar="FILE",
                   help="scan this saved kernel log for SD card errors instead of dmesg/journalctl")
    p.add_argument("--simulate-never", action="append", default=[], metavar="BUTTON",
                   help="with --simulate: the scripted technician never presses this button")
    p.add_argument("--simulate-stuck", action="append", default=[], metavar="BUTTON",
                   help="with --simulate: this button is held down from the start")
    p.set_defaults(handler=run)


def _config(args: argparse.Namespace):  # -> (Config, error or None)
    """The box's config; if it is invalid, the defaults (with --data) so the rest still runs."""
    from device.commands import load_cli_config
    from device.config import load_config
    from device.errors import UserFacingError

    try:
        return load_cli_config(args), None
    except UserFacingError as exc:
        overrides: dict[str, Any] = {}
        if args.data:
            overrides["paths"] = {"data_dir": str(Path(args.data).resolve())}
        if args.simulate:
            overrides["buttons"] = {"pin_factory": "mock"}
        return load_config(etc_path=None, environ={}, overrides=overrides or None), str(exc)


SERVICE = "circlebox.service"


def _stop_box_if_idle(data_dir: Path) -> bool:
    """The runtime owns the buttons and LEDs: stop its service for the self-test (True if it was
    stopped, to start it again after). Never during a circle."""
    import subprocess

    from device.control import BoxNotRunning, ControlClient, socket_path
    from device.errors import UserFacingError

    try:
        status = ControlClient(socket_path(data_dir)).status()
    except (BoxNotRunning, OSError, ValueError):
        return False
    if status.get("state") not in ("idle", "finished", None):
        raise UserFacingError("a circle is running: run the doctor after it has ended")
    print(f"stopping {SERVICE} for the self-test (it is started again at the end)", flush=True)
    try:
        subprocess.run(["systemctl", "stop", SERVICE], check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise UserFacingError(f"the box is running and owns the buttons, and it could not be stopped ({exc}): "
                              f"run `sudo systemctl stop {SERVICE}` first") from exc
    return True


def _start_box() -> None:
    import subprocess

    try:
        subprocess.run(["systemctl", "start", SERVICE], check=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"circlebox: could not start {SERVICE} again ({exc}): run `sudo systemctl start {SERVICE}`",
              file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from device.doctor import (
        DoctorSeams,
        ScriptedTechnician,
        Technician,
        default_report_path,
        write_report,
    )
    from device.errors import UserFacingError

    if not args.simulate and (args.mic or args.simulate_never or args.simulate_stuck):
        raise UserFacingError("--mic, --simulate-never and --simulate-stuck need --simulate")
    config, config_error = _config(args)
    restart = False
    kernel_log = None
    if args.kernel_log is not None:
        path = args.kernel_log

        def kernel_log() -> str | None:
            try:
                return path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return None

    with tempfile.TemporaryDirectory(prefix="circlebox-doctor-") as tmp:
        if args.simulate:
            import numpy as np

            from device.buttons import make_pin_factory
            from device.listening import open_wav_mic

            played = Path(tmp) / "speaker.raw"
            os.environ["SDL_AUDIODRIVER"] = "disk"
            os.environ["SDL_DISKAUDIOFILE"] = str(played)
            mic_path = args.mic
            seams = DoctorSeams(
                simulate=True,
                open_speaker=lambda rate: _pygame_speaker(rate, config, "disk"),
                pin_factory=make_pin_factory("mock"),
                technician=ScriptedTechnician(never=args.simulate_never, stuck=args.simulate_stuck),
                open_mic=(lambda: open_wav_mic(mic_path)) if mic_path is not None else None,
                played_pcm=lambda: np.fromfile(played, dtype="<i2") if played.exists() else np.zeros(0, "<i2"),
                button_timeout_s=args.button_timeout if args.button_timeout is not None else 3.0,
            )
            names = {b.name for b in config.buttons.map}
            unknown = sorted({*args.simulate_never, *args.simulate_stuck} - names)
            if unknown:
                raise UserFacingError(f"no button named {', '.join(unknown)} (buttons: {', '.join(sorted(names))})")
        else:
            from device.buttons import make_pin_factory

            restart = _stop_box_if_idle(config.data_dir)

            def open_mic():
                from device.listening import listening_settings, open_arecord_mic

                return open_arecord_mic(listening_settings(config.listening).device)

            factory, gpio_error = None, None
            try:
                factory = make_pin_factory(config.buttons.pin_factory)
            except Exception as exc:  # buttons and lights FAIL; the speaker, clock, disk... still checked
                gpio_error = f"{exc} (on a laptop, --simulate tries the whole doctor)"
            seams = DoctorSeams(
                simulate=False,
                open_speaker=lambda rate: _pygame_speaker(rate, config, config.audio.driver),
                pin_factory=factory,
                gpio_error=gpio_error,
                technician=Technician(),
                open_mic=open_mic,
                button_timeout_s=args.button_timeout if args.button_timeout is not None else 15.0,
            )
        seams.confirm_timeout_s = args.confirm_timeout
        seams.mic_seconds = args.mic_seconds
        if kernel_log is not None:
            seams.kernel_log = kernel_log
        try:
            report, stamp = _run(config, seams, config_error)
        finally:
            if restart:
                _start_box()
    target = args.report
    if target is None and config.data_dir.is_dir():
        target = default_report_path(config.data_dir, stamp)
    if target is not None:
        try:
            write_report(report, target)
        except OSError as exc:
            print(f"circlebox: cannot write the report to {target}: {exc}", file=sys.stderr)
            return 1
    counts = {s: sum(c.status == s for c in report.checks) for s in ("PASS", "WARN", "FAIL", "SKIP")}
    failed = [c.name for c in report.checks if c.status == "FAIL"]
    tail = f": failed {', '.join(failed)}" if failed else ""
    print(f"{report.result} ({counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed, "
          f"{counts['SKIP']} skipped){tail}")
    if target is not None:
        print(f"report: {target}")
    else:  # the doctor does not make the box's data folder: first boot does
        print(f"report: not written: the box has not been set up or run yet ({config.data_dir} does not exist); "
              "give --report FILE to keep one")
    return 0 if report.result == "PASS" else 1


def _pygame_speaker(rate: int, config, driver: str | None):
    from audio.speaker import PygameSpeaker

    return PygameSpeaker(rate, config.audio.buffer_samples, driver)


def _run(config, seams, config_error):
    from datetime import UTC, datetime

    from device.datafolder import DataFolder
    from device.doctor import Doctor
    from device.wallclock import WallClock

    data = DataFolder(config.data_dir)
    reading = WallClock(data.clock).read() if data.root.is_dir() else None

    when = reading.time if reading is not None else datetime.now(UTC)
    report = Doctor(config, seams, config_error=config_error).run(when.isoformat(timespec="seconds"))
    return report, when.strftime("%Y%m%dT%H%M%SZ")
