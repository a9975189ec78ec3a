"""`circlebox doctor`: the technician's self-test, on the box or simulated on a laptop.

It walks through what a technician cannot see: configuration, voices and models, the rendered
circle and the box's own prompts, free space, SD card errors and the clock; then, with the
technician, the speaker (a tone and "Speaker works."), the microphone (level and speech
detected while they talk), each button in turn ("Press the next button." ... "Next works.") and
the lights. Every check ends [PASS], [WARN], [FAIL] or [SKIP]; WARN and SKIP do not fail the
box. A JSON report is written atomically.

Every part that touches the world is a seam (`DoctorSeams`): the speaker, the pin factory, the
microphone, the "technician" (a person on the box; a script in `--simulate` that presses each
button when asked, and can leave one unpressed or hold one stuck), disk usage, the kernel log
and the wall clock. Room audio is read frame by frame and dropped, like the runtime does.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.config import Config
from device.datafolder import DataFolder

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
TONE_ID = "doctor:tone"
TONE_HZ = 1000.0
TONE_S = 0.6
WARN_FREE_MB = 500
FAIL_FREE_MB = 100
BUTTON_RELEASE_S = 3.0  # a button still down this long after its press is stuck
LED_SHOW_S = 1.2  # on the box: how long each light pattern is shown to the technician
SD_ERROR = re.compile(
    r"(mmc\d+:.*(error|timeout|fail|crc|reset))|(I/O error.*mmcblk)|(EXT4-fs error.*mmcblk)|(mmcblk\d+.*(error|fail))",
    re.IGNORECASE,
)


@dataclass
class CheckResult:
    name: str
    status: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return f"[{self.status}] {self.name}: {self.detail}"


@dataclass
class DoctorReport:
    result: str
    checks: list[CheckResult]
    started: str
    simulate: bool
    box: str

    def to_json(self) -> str:
        body = {"result": self.result, "started": self.started, "simulate": self.simulate, "box": self.box,
                "checks": [asdict(c) for c in self.checks]}
        return json.dumps(body, indent=2, sort_keys=False) + "\n"


def overall(checks: Iterable[CheckResult]) -> str:
    """FAIL if any check failed; WARN and SKIP do not fail the box."""
    return FAIL if any(c.status == FAIL for c in checks) else PASS


# -- seams --------------------------------------------------------------------------------------


class Technician:
    """The person at the box: presses buttons when asked, confirms what they hear and see.

    On the box the buttons are pressed by hand; `confirm` waits for NEXT (or "y" + Enter on the
    console). `prepare` and `asked_to_press` do nothing here: they exist for the scripted one.
    """

    interactive = True

    def prepare(self, pins: Mapping[str, Any]) -> None:
        return None

    def asked_to_press(self, name: str, pin: Any) -> None:
        return None

    def listen_console(self, on_yes: Callable[[], None]) -> None:
        """Call `on_yes` whenever "y" + Enter is typed on an interactive console (one reader
        thread for the whole run, so answers never go to a question that is over)."""
        if not sys.stdin.isatty():
            return

        def read() -> None:
            while True:
                ready, _, _ = select.select([sys.stdin], [], [], 1.0)
                if ready:
                    line = sys.stdin.readline()
                    if not line:
                        return
                    if line.strip().lower() in ("y", "yes"):
                        on_yes()

        threading.Thread(target=read, name="doctor-console", daemon=True).start()

    def close(self) -> None:
        return None


class ScriptedTechnician(Technician):
    """`--simulate`: presses each button shortly after the doctor asks for it (MockFactory pins).

    `never`: buttons it does not press; `stuck`: buttons held down from the start and never let go.
    """

    interactive = False

    def __init__(self, never: Iterable[str] = (), stuck: Iterable[str] = (), delay_s: float = 0.05,
                 hold_s: float = 0.1) -> None:
        self.never = set(never)
        self.stuck = set(stuck)
        self.delay_s = delay_s
        self.hold_s = hold_s
        self.asked: list[str] = []
        self._timers: list[threading.Timer] = []

    def prepare(self, pins: Mapping[str, Any]) -> None:
        unknown = sorted((self.never | self.stuck) - set(pins))
        if unknown:
            raise ValueError(f"no button named {', '.join(unknown)} (buttons: {', '.join(pins)})")
        for name in self.stuck:
            pins[name].drive_low()

    def asked_to_press(self, name: str, pin: Any) -> None:
        self.asked.append(name)
        if name in self.never or name in self.stuck:
            return

        def press() -> None:
            pin.drive_low()
            time.sleep(self.hold_s)
            pin.drive_high()

        timer = threading.Timer(self.delay_s, press)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def listen_console(self, on_yes: Callable[[], None]) -> None:
        return None

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()


def read_kernel_log() -> str | None:
    """The kernel log (dmesg, else journalctl -k of this boot), or None if neither is readable."""
    for argv in (["dmesg"], ["journalctl", "-k", "-b", "--no-pager", "-q"]):
        if shutil.which(argv[0]) is None:
            continue
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            continue
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout
    return None


@dataclass
class DoctorSeams:
    """Everything the doctor touches. The CLI builds the real or simulated set."""

    simulate: bool
    open_speaker: Callable[[int], Any]  # sample_rate -> Speaker; raises on no audio output
    pin_factory: Any  # None when the GPIO could not be opened (`gpio_error` says why)
    technician: Technician
    open_mic: Callable[[], Any] | None  # None: no microphone source (SKIP)
    played_pcm: Callable[[], np.ndarray] | None = None  # simulate: what the speaker wrote
    disk_usage: Callable[[Path], Any] = shutil.disk_usage
    kernel_log: Callable[[], str | None] = read_kernel_log
    wall_clock: Callable[[Path], Any] | None = None  # data_dir -> object with read()
    voices: Callable[[Path | None], list[Any]] | None = None  # voices_dir -> voices
    button_timeout_s: float = 15.0
    confirm_timeout_s: float = 20.0
    mic_seconds: float = 10.0
    out: Callable[[str], None] = print
    gpio_error: str | None = None  # the GPIO chip could not be opened: buttons and lights FAIL, the rest runs


# -- the self-test ---------------------------------------------------------------------------------


def tone_pcm(sample_rate: int) -> bytes:
    """A plain 1 kHz test tone at -12 dBFS with soft edges."""
    n = round(TONE_S * sample_rate)
    t = np.arange(n) / sample_rate
    edge = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    x = 10 ** (-12 / 20) * np.sin(2 * np.pi * TONE_HZ * t) * edge
    return np.round(x * 32767).astype("<i2").tobytes()


def find_in_played(played: np.ndarray, sounds: list[np.ndarray]) -> list[str]:
    """Problems finding `sounds`, in order, sample for sample, in what the speaker wrote ([] = all there).

    Each sound is aligned by its first non-zero sample to the next non-zero sample played.
    """
    problems: list[str] = []
    pos = 0
    for index, sound in enumerate(sounds):
        label = ("tone", "spoken prompt")[min(index, 1)]
        nz_played = np.flatnonzero(played[pos:])
        nz_sound = np.flatnonzero(sound)
        if nz_played.size == 0:
            problems.append(f"the {label} is missing from the output (silence)")
            break
        start = pos + int(nz_played[0]) - int(nz_sound[0])
        if start < 0:
            start = pos
        got = played[start:start + sound.size].astype(np.int32)
        if got.size < sound.size or int(np.abs(got - sound.astype(np.int32)).max()) > 1:
            problems.append(f"the {label} was not played intact")
            break
        pos = start + sound.size
    return problems


class Doctor:
    def __init__(self, config: Config, seams: DoctorSeams, *, config_error: str | None = None) -> None:
        self.config = config
        self.seams = seams
        self.config_error = config_error
        self.data_dir = config.data_dir
        self.data = DataFolder(config.data_dir)
        self.checks: list[CheckResult] = []
        self.speaker: Any = None
        self.bank: Any = None
        self.texts: dict[str, str] = {}
        self.buttons: dict[str, Any] = {}
        self.leds: Any = None
        self._presses: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self._stuck: set[str] = set()
        self._console_yes = threading.Event()
        self._speaker_index: int | None = None
        self.circle_bank: Any = None

    # -- output ------------------------------------------------------------------------------

    def add(self, name: str, status: str, detail: str, **data: Any) -> CheckResult:
        result = CheckResult(name, status, detail, data)
        self.checks.append(result)
        self.seams.out(result.line())
        return result

    def say(self, *sound_ids: str) -> None:
        """Print each instruction, and speak it if the system prompts are there (wait on the box)."""
        for sound_id in sound_ids:
            text = self.texts.get(sound_id)
            if text:
                self.seams.out(f"  >> {text}")
            if self.speaker is not None and self.bank is not None and sound_id in self.bank:
                self._play(sound_id, wait=not self.seams.simulate)

    def _play(self, sound_id: str, *, wait: bool) -> bool:
        """Play a sound; with wait, until the speaker says it finished. False on a timeout."""
        self.speaker.play(sound_id)
        if not wait:
            return True
        deadline = time.monotonic() + self.bank.duration_s(sound_id) + 3.0
        while time.monotonic() < deadline:
            if self.speaker.poll(time.monotonic()) == sound_id:
                return True
            time.sleep(0.01)
        return False

    # -- static checks --------------------------------------------------------------------------

    def check_config(self) -> None:
        if self.config_error:
            self.add("config", FAIL, self.config_error)
            return
        problems = []
        try:
            from device.listening import listening_settings

            listening_settings(self.config.listening)
        except ImportError:
            pass
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            self.add("config", FAIL, "; ".join(problems))
        else:
            self.add("config", PASS, f"valid (box '{self.config.box.name}', data {self.data_dir})")

    def _source(self) -> Any:
        """The circle the runtime would play (a course's meeting: device.course_play), from where
        (device.content.resolve_circle)."""
        from device.content import resolve_circle
        from device.course import CourseError
        from device.course_play import circle_for_box

        try:
            name, _meeting = circle_for_box(self.config, self.data)
        except CourseError:  # said by the course check; the runtime then plays session.script
            name = self.config.session.script
        return resolve_circle(name, self.data)

    def check_course(self) -> None:
        """One line: the course the box runs and where it stands (nothing without a course)."""
        from device.course import CourseError, check_course_circles
        from device.course_play import AnnouncementMissing, announcement_pcm, course_play

        try:
            play = course_play(self.config, self.data)
        except CourseError as exc:
            self.add("course", FAIL, f"the box plays circle {self.config.session.script} instead: {exc}")
            return
        if play is None:
            return
        where = "finished (it plays its last circle again)" if play.finished else \
            f"next is {play.meeting.label.lower()} (circle {play.circle})"
        detail = f"{play.source.describe()}: {where}"
        problems = check_course_circles(play.course, self.data)
        if problems:
            self.add("course", FAIL, f"{detail}; " + "; ".join(problems))
            return
        warnings = [w for w in (play.fault, play.note) if w]
        if play.meeting is not None:
            try:
                announcement_pcm(play.course, play.meeting, self.data, self.config.audio.sample_rate)
            except AnnouncementMissing as exc:
                warnings.append(f"{exc} (the circle plays without it)")
        self.add("course", WARN if warnings else PASS, "; ".join([detail, *warnings]), position=play.position)

    def _script(self) -> Any:
        return self._source().loaded

    def check_data_folder(self) -> None:
        """A box that was never set up or run has no data folder: say so first, plainly."""
        if self.data.root.is_dir():
            self.add("data folder", PASS, f"{self.data.root}")
        else:
            self.add("data folder", FAIL, f"the box has not been set up or run yet: {self.data.root} does not "
                     "exist (first boot makes it on a box; `circlebox render` makes it on a laptop)")

    def check_voices(self) -> None:
        from audio.voices import list_voices

        lister = self.seams.voices or list_voices
        try:
            installed = {v.id for v in lister(self.config.voice_dirs)}
        except Exception as exc:  # a broken voice folder must not stop the self-test
            self.add("voices", FAIL, f"cannot list the voices: {exc}")
            return
        needed = {self.config.audio.system_voice: "audio.system_voice"}
        try:
            script = self._script().script
            if script.voice:
                needed.setdefault(script.voice, f"voice of circle '{script.script}'")
        except Exception:  # reported by the circle check
            pass
        missing = [f"'{v}' ({why})" for v, why in needed.items() if v not in installed]
        if missing:
            have = ", ".join(sorted(installed)) or "none"
            self.add("voices", FAIL, f"voice {', '.join(missing)} not installed; installed: {have}",
                     installed=sorted(installed))
        else:
            self.add("voices", PASS, f"{', '.join(sorted(needed))} installed ({len(installed)} voices)",
                     installed=sorted(installed))

    def check_model(self) -> None:
        section = self.config.listening
        explicit = section.commands.model_path
        wanted = section.enabled and section.commands.enabled
        if not explicit and not wanted:
            self.add("speech model", SKIP, "spoken commands are not configured")
            return
        try:
            from device.listening import CommandsUnavailable, find_model, listening_settings

            path = find_model(listening_settings(section).commands)
        except ImportError as exc:
            self.add("speech model", FAIL, f"listening is not installed: {exc}")
            return
        except (CommandsUnavailable, ValueError) as exc:
            # An explicit path that is wrong is a broken box; a missing language pack only
            # means pacing without spoken commands.
            self.add("speech model", FAIL if explicit else WARN, str(exc))
            return
        import importlib.util

        if importlib.util.find_spec("vosk") is None:
            self.add("speech model", FAIL, f"model at {path} but vosk is not installed")
            return
        self.add("speech model", PASS, f"vosk model at {path}", path=str(path))

    def check_content(self) -> None:
        """The circle and the box's own prompts exactly as the runtime would load them: the same
        resolver (box copy, installed bundle, packaged, interrupted save) and the same caches."""
        from device.content import ContentError, load_source, system_manifest_for
        from device.script import ScriptError
        from device.system_prompts import system_rendered_matches

        source = None
        try:
            source = self._source()
            circle = load_source(source, self.config.audio.system_language)
            self.circle_bank = circle.bank
            if circle.stale_note:  # plays, but its sounds are from an earlier version of the box
                self.add("circle", WARN, f"{source.describe()}: {circle.stale_note}",
                         origin=source.origin.value, cache=str(source.cache))
            else:
                self.add("circle", PASS, f"{source.describe()} rendered and matching",
                         origin=source.origin.value, cache=str(source.cache))
        except (ScriptError, ContentError, ValueError, OSError) as exc:
            self.add("circle", FAIL, str(exc))
        audio = self.config.audio
        names = [b.name for b in self.config.buttons.map]
        manifest = system_manifest_for(source) if source is not None else None
        if manifest is None:
            where = " or ".join(str(c) for c in (source.system_caches if source else (self.data.cache,)))
            self.add("system prompts", FAIL, "not rendered: run `circlebox render`", looked_in=where)
        elif not system_rendered_matches(manifest.parent.parent, voice_id=audio.system_voice,
                                         sample_rate=audio.sample_rate, loudness_lufs=audio.loudness_lufs,
                                         button_names=names):
            self.add("system prompts", FAIL, "changed since rendered (voice, buttons or settings): "
                     "run `circlebox render`", manifest=str(manifest))
        else:
            self.add("system prompts", PASS, f"rendered with {audio.system_voice}", manifest=str(manifest))
        self.check_language_pack(names)

    def check_language_pack(self, button_names: list[str]) -> None:
        """The language the box's own prompts are in: which of them its pack has not recorded
        (those are said in English: docs/languages.md)."""
        from device.language import base_language, language_name
        from device.language_packs import missing_prompts, pack_recordings
        from device.system_prompts import pack_prompts

        language = self.config.audio.system_language
        if base_language(language) == "en":
            return
        ids = list(pack_prompts(button_names=button_names))
        _found, problems = pack_recordings(self.data, language)
        missing = missing_prompts(self.data, language, ids)
        words = language_name(language)
        if problems:
            self.add("language pack", WARN, f"{words}: {problems[0]}", problems=problems)
        elif missing:
            self.add("language pack", WARN, f"{words}: {len(missing)} of {len(ids)} of the box's own prompts have "
                     f"no recording and are said in English (first: {missing[0]}); record them on the admin "
                     "page (Box's own messages) or install a language_pack bundle", missing=missing)
        else:
            self.add("language pack", PASS, f"{words}: every one of the box's own prompts is recorded")

    def check_disk(self) -> None:
        if not self.data_dir.is_dir():
            self.add("disk", SKIP, "no data folder yet (see 'data folder')")
            return
        try:
            usage = self.seams.disk_usage(self.data_dir)
        except OSError as exc:
            self.add("disk", FAIL, f"cannot read free space of {self.data_dir}: {exc}")
            return
        free_mb = int(usage.free // (1024 * 1024))
        data = {"free_mb": free_mb, "total_mb": int(usage.total // (1024 * 1024))}
        if free_mb < FAIL_FREE_MB:
            self.add("disk", FAIL, f"only {free_mb} MB free on {self.data_dir} (need {FAIL_FREE_MB} MB)", **data)
        elif free_mb < WARN_FREE_MB:
            self.add("disk", WARN, f"{free_mb} MB free on {self.data_dir} (below {WARN_FREE_MB} MB)", **data)
        else:
            self.add("disk", PASS, f"{free_mb} MB free on {self.data_dir}", **data)

    def check_sd_card(self) -> None:
        try:
            text = self.seams.kernel_log()
        except OSError as exc:
            text = None
            self.seams.out(f"  (kernel log: {exc})")
        if text is None:
            self.add("sd card", SKIP, "kernel log not readable (run with sudo)")
            return
        errors = [line.strip() for line in text.splitlines() if SD_ERROR.search(line)]
        if errors:
            self.add("sd card", FAIL, f"{len(errors)} SD card error(s) in the kernel log, e.g. "
                     f"'{errors[0][:120]}': copy the data off and replace the card", errors=errors[:20])
        else:
            self.add("sd card", PASS, "no SD card errors in the kernel log")

    def check_clock(self) -> None:
        from device.wallclock import WallClock

        make = self.seams.wall_clock or (lambda d: WallClock(DataFolder(d).clock))
        try:
            if self.data.root.is_dir():
                reading = make(self.data_dir).read()
            else:  # reading keeps a high-water mark: never make the box's folder for it
                import tempfile

                with tempfile.TemporaryDirectory(prefix="circlebox-doctor-clock-") as tmp:
                    reading = make(Path(tmp)).read()
        except Exception as exc:
            self.add("clock", FAIL, f"cannot read the clock: {exc}")
            return
        shown = reading.time.strftime("%Y-%m-%d %H:%M UTC")
        if reading.trusted:
            self.add("clock", PASS, f"{shown}, synchronised")
        else:
            # No RTC and no network is normal for a box: dates are kept monotonic and marked.
            self.add("clock", WARN, f"{shown}, not trusted: {reading.reason}", reason=reading.reason)

    # -- outputs ---------------------------------------------------------------------------------

    def open_outputs(self) -> None:
        from audio.bank import SoundBank
        from device.system_prompts import system_manifest_path, system_prompts

        self.texts = {pid: " ".join(parts) for pid, parts in system_prompts(self.config).items()}
        rate = self.config.audio.sample_rate
        bank = self.circle_bank
        if bank is None:  # no circle: the box's own prompts alone
            with contextlib.suppress(Exception):
                bank = SoundBank.from_manifest(system_manifest_path(self.data.cache))
            if bank is not None:  # in the language of the box's own words (device.language_packs)
                from device.language_packs import apply_pack

                apply_pack(bank, self.data, self.config.audio.system_language)
        if bank is None or bank.sample_rate != rate:
            bank = SoundBank(rate)
            bank.add_tones()
        bank.add(TONE_ID, tone_pcm(bank.sample_rate))
        self.bank = bank
        try:
            speaker = self.seams.open_speaker(bank.sample_rate)
            speaker.load(bank)
            speaker.set_volume(1.0 if self.seams.simulate else self.config.audio.volume)
            self.speaker = speaker
        except Exception as exc:
            self.speaker = None
            self._speaker_error = str(exc)

    def open_gpio(self) -> None:
        from gpiozero import Button

        if self.seams.gpio_error is not None:  # a broken GPIO chip (or a VM): report it, check the rest
            for spec in self.config.buttons.map:
                self.add(f"button {spec.name}", FAIL, f"no GPIO on this machine: {self.seams.gpio_error}")
            self.leds, self._led_error = None, f"no GPIO on this machine: {self.seams.gpio_error}"
            return
        for spec in self.config.buttons.map:
            try:
                button = Button(spec.pin, pull_up=True, bounce_time=None, pin_factory=self.seams.pin_factory)
            except Exception as exc:
                self.add(f"button {spec.name}", FAIL, f"GPIO {spec.pin} cannot be opened: {exc}")
                continue
            button.when_pressed = lambda _b=None, n=spec.name: self._presses.put((n, True))
            button.when_released = lambda _b=None, n=spec.name: self._presses.put((n, False))
            self.buttons[spec.name] = button
        self.seams.technician.prepare({name: b.pin for name, b in self.buttons.items()})
        self._stuck = {name for name, b in self.buttons.items() if b.is_pressed}
        try:
            from device.leds import StatusLeds

            leds = self.config.leds
            self.leds = StatusLeds(leds.status, leds.help, self.seams.pin_factory)
        except Exception as exc:
            self.leds = None
            self._led_error = str(exc)

    def close(self) -> None:
        for part in (*self.buttons.values(), self.leds):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        self.seams.technician.close()
        if self.speaker is not None:
            with contextlib.suppress(Exception):
                self.speaker.close()

    def _next_button(self) -> str | None:
        for spec in self.config.buttons.map:
            if spec.press == "next" and spec.name in self.buttons and spec.name not in self._stuck:
                return spec.name
        return None

    def _drain_presses(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self._presses.get_nowait()

    def confirm(self, timeout_s: float) -> bool:
        """On the box: the technician presses NEXT (or types y + Enter) within the time."""
        self.seams.out("  (press NEXT on the box, or type y and Enter here)")
        nxt = self._next_button()
        self._drain_presses()
        self._console_yes.clear()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._console_yes.is_set():
                return True
            with contextlib.suppress(queue.Empty):
                name, down = self._presses.get(timeout=0.05)
                if down and name == nxt:
                    return True
        return self._console_yes.is_set()

    # -- interactive checks ------------------------------------------------------------------------

    def check_speaker(self) -> None:
        if self.speaker is None:
            self.add("speaker", FAIL, f"no audio output: {getattr(self, '_speaker_error', 'unknown')}")
            return
        tone_ok = self._play(TONE_ID, wait=True)
        spoken = "sys:doctor_speaker_works" in self.bank
        voice_ok = self._play("sys:doctor_speaker_works", wait=True) if spoken else False
        if self.seams.simulate:
            # Verified against the samples the speaker wrote, once it is closed (see finish()).
            self._speaker_index = len(self.checks)
            self.checks.append(CheckResult("speaker", SKIP, "checked at the end"))
            self._speaker_spoken = spoken
            return
        if not tone_ok or (spoken and not voice_ok):
            self.add("speaker", FAIL, "the output did not finish playing (audio device stuck?)")
            return
        self.say("sys:doctor_confirm_heard")
        if self.confirm(self.seams.confirm_timeout_s):
            extra = "" if spoken else " (tone only: system prompts not rendered)"
            self.add("speaker", PASS, f"tone and voice heard{extra}")
        else:
            self.add("speaker", FAIL, f"not confirmed within {self.seams.confirm_timeout_s:g} s: nothing heard? "
                     "check the amplifier wiring and `aplay -l`")

    def _finish_speaker(self) -> None:
        if self._speaker_index is None:
            return
        played = self.seams.played_pcm() if self.seams.played_pcm else np.zeros(0, dtype="<i2")
        sounds = [np.frombuffer(self.bank.pcm(TONE_ID), dtype="<i2")]
        if self._speaker_spoken:
            sounds.append(np.frombuffer(self.bank.pcm("sys:doctor_speaker_works"), dtype="<i2"))
        problems = find_in_played(played, sounds)
        if problems:
            result = CheckResult("speaker", FAIL, "; ".join(problems), {"samples_written": int(played.size)})
        else:
            what = "tone and 'Speaker works.'" if self._speaker_spoken else "tone (system prompts not rendered)"
            result = CheckResult("speaker", PASS, f"{what} found sample for sample in the output",
                                 {"samples_written": int(played.size)})
        self.checks[self._speaker_index] = result
        self.seams.out(result.line())

    def check_mic(self) -> None:
        if self.seams.open_mic is None:
            self.add("microphone", SKIP, "no microphone in simulation (give --mic ROOM.wav)")
            return
        try:
            from device.listening import FRAME_S, Listener, SpeechStarted, listening_settings
        except ImportError as exc:
            self.add("microphone", FAIL, f"listening is not installed: {exc}")
            return
        try:
            settings = listening_settings(self.config.listening)
        except ValueError as exc:
            self.add("microphone", FAIL, str(exc))
            return
        self.say("sys:doctor_mic_talk")
        try:
            mic = self.seams.open_mic()
        except Exception as exc:
            self.add("microphone", FAIL, f"cannot open the microphone: {exc}")
            self.say("sys:doctor_mic_failed")
            return
        listener = Listener(settings)  # pacing only: no spoken-command decoding here
        frames = 0
        peak = -200.0
        speech_at: float | None = None
        limit = int(self.seams.mic_seconds / FRAME_S)
        try:
            while frames < limit:
                frame = mic.read_frame()  # in memory only; dropped after this loop turn
                if frame is None:
                    break
                events = listener.process(frame, box_playing=False)
                frames += 1
                peak = max(peak, listener.level_db)
                if speech_at is None and (listener.in_speech or any(isinstance(e, SpeechStarted) for e in events)):
                    speech_at = frames * FRAME_S
                    limit = min(limit, frames + int(1.0 / FRAME_S))  # a second more for the level
        except Exception as exc:
            self.add("microphone", FAIL, f"the microphone stopped: {exc}")
            return
        finally:
            mic.close()
        data = {"peak_db": round(peak, 1), "noise_floor_db": round(listener.noise_floor_db, 1),
                "seconds": round(frames * FRAME_S, 2), "speech_detected": speech_at is not None}
        if frames == 0:
            self.add("microphone", FAIL, "no audio from the microphone", **data)
        elif speech_at is not None:
            self.add("microphone", PASS, f"speech detected after {speech_at:.1f} s; level peak {peak:.0f} dB, "
                     f"floor {listener.noise_floor_db:.0f} dB", **data)
            self.say("sys:doctor_mic_works")
        elif peak <= -90:
            self.add("microphone", FAIL, f"only silence in {frames * FRAME_S:.1f} s: is the microphone "
                     "connected and the right capture device set (listening.device)?", **data)
            self.say("sys:doctor_mic_failed")
        else:
            self.add("microphone", FAIL, f"no speech detected in {frames * FRAME_S:.1f} s (level peak "
                     f"{peak:.0f} dB): talk closer to the box, or check the microphone", **data)
            self.say("sys:doctor_mic_failed")

    def check_buttons(self) -> None:
        from device.system_prompts import press_prompt_id, works_prompt_id

        if not self.buttons:
            return
        self.say("sys:doctor_buttons")
        for spec in self.config.buttons.map:
            name = spec.name
            if name not in self.buttons:
                continue
            if name in self._stuck:
                self.add(f"button {name}", FAIL, f"stuck: pressed at the start (GPIO {spec.pin} held to ground)",
                         pin=spec.pin)
                self.say("sys:doctor_button_stuck")
                continue
            self._drain_presses()
            self.say(press_prompt_id(name))
            self.seams.technician.asked_to_press(name, self.buttons[name].pin)
            result = self._wait_for(name, spec.pin)
            self.say(works_prompt_id(name) if result.status == PASS else "sys:doctor_button_failed")

    def _wait_for(self, name: str, pin: int) -> CheckResult:
        timeout = self.seams.button_timeout_s
        deadline = time.monotonic() + timeout
        others: list[str] = []
        pressed = False
        while time.monotonic() < deadline:
            try:
                got, down = self._presses.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if got == name and down:
                pressed = True
                break
            if down and got not in others:
                others.append(got)
        if not pressed:
            instead = f"; pressed instead: {', '.join(others)} (wires swapped?)" if others else ""
            return self.add(f"button {name}", FAIL, f"not pressed within {timeout:g} s (GPIO {pin}){instead}",
                            pin=pin)
        if not self._released(name):
            return self.add(f"button {name}", FAIL, f"pressed but not released within {BUTTON_RELEASE_S:g} s "
                            f"(GPIO {pin} stuck?)", pin=pin)
        return self.add(f"button {name}", PASS, f"pressed and released (GPIO {pin})", pin=pin)

    def _released(self, name: str) -> bool:
        if not self.buttons[name].is_pressed:
            return True
        deadline = time.monotonic() + BUTTON_RELEASE_S
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                got, down = self._presses.get(timeout=0.05)
                if got == name and not down:
                    return True
            if not self.buttons[name].is_pressed:
                return True
        return False

    def check_leds(self) -> None:
        from device.leds import PATTERNS

        if self.leds is None:
            self.add("lights", FAIL, f"cannot open the LEDs: {getattr(self, '_led_error', 'unknown')}")
            return
        if self.leds.status is None and self.leds.help is None:
            self.add("lights", SKIP, "no LEDs configured (leds.status, leds.help)")
            return
        self.say("sys:doctor_leds")
        problems: list[str] = []
        if self.leds.status is not None:
            for pattern, (on, off) in PATTERNS.items():
                self.leds.show(pattern)
                seen = self._watch(self.leds.status, on, off)
                want = {False} if on == 0 else {True} if off == 0 else {True, False}
                if seen != want:
                    problems.append(f"status light pattern '{pattern}' showed {sorted(seen)} not {sorted(want)}")
            self.leds.show("off")
        if self.leds.help is not None:
            self.leds.set_help(True)
            lit = self._watch(self.leds.help, 1.0, 0.0)
            self.leds.set_help(False)
            dark = self._watch(self.leds.help, 0.0, 1.0)
            if lit != {True} or dark != {False}:
                problems.append("help light did not follow on/off")
        if problems:
            self.add("lights", FAIL, "; ".join(problems))
            return
        pins = f"status GPIO {self.config.leds.status}, help GPIO {self.config.leds.help}"
        if self.seams.simulate:
            self.add("lights", PASS, f"every pattern drove the pins ({pins})")
        elif self.confirm(self.seams.confirm_timeout_s):
            self.add("lights", PASS, f"every pattern seen by the technician ({pins})")
        else:
            self.add("lights", FAIL, f"not confirmed within {self.seams.confirm_timeout_s:g} s ({pins})")

    def _watch(self, led: Any, on: float, off: float) -> set[bool]:
        """The states an LED's pin took while a pattern ran: until both were seen (a blink) or
        briefly (steady); on the box, long enough for a person to see it."""
        blink = on > 0 and off > 0
        limit = (on + off + 0.3) if blink else 0.05
        if not self.seams.simulate:
            limit = max(limit, LED_SHOW_S)
        seen: set[bool] = set()
        deadline = time.monotonic() + limit
        while True:
            seen.add(bool(led.is_lit))
            if time.monotonic() >= deadline or (self.seams.simulate and blink and len(seen) == 2):
                return seen
            time.sleep(0.005)

    # -- all of it -------------------------------------------------------------------------------

    def run(self, started: str) -> DoctorReport:
        for check in (self.check_data_folder, self.check_config, self.check_voices, self.check_model,
                      self.check_course, self.check_content, self.check_disk, self.check_sd_card, self.check_clock):
            try:
                check()
            except Exception as exc:  # one broken check must not hide the others
                self.add(check.__name__.removeprefix("check_"), FAIL, f"the check itself failed: {exc!r}")
        self.open_outputs()
        self.seams.technician.listen_console(self._console_yes.set)
        try:
            self.open_gpio()
            self.say("sys:doctor_start")
            for check in (self.check_speaker, self.check_mic, self.check_buttons, self.check_leds):
                try:
                    check()
                except Exception as exc:
                    self.add(check.__name__.removeprefix("check_"), FAIL, f"the check itself failed: {exc!r}")
            if not self.seams.simulate:
                self.say("sys:doctor_pass" if overall(self.checks) == PASS else "sys:doctor_fail")
        finally:
            self.close()
        self._finish_speaker()
        return DoctorReport(overall(self.checks), self.checks, started, self.seams.simulate, self.config.box.name)


def write_report(report: DoctorReport, path: Path) -> Path:
    from device.fsutil import atomic_write_text

    atomic_write_text(Path(path), report.to_json())
    return Path(path)


def default_report_path(data_dir: Path, stamp: str) -> Path:
    return DataFolder(data_dir).reports / f"doctor-{stamp}.json"


__all__ = [
    "FAIL",
    "PASS",
    "SKIP",
    "WARN",
    "CheckResult",
    "Doctor",
    "DoctorReport",
    "DoctorSeams",
    "ScriptedTechnician",
    "Technician",
    "default_report_path",
    "find_in_played",
    "overall",
    "read_kernel_log",
    "tone_pcm",
    "write_report",
]
