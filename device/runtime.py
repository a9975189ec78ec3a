"""The device runtime: the box in real time, with its hardware at the edges.

Builds the adapters from config (speaker, buttons, LEDs, microphone, usage store, control
socket), loads the rendered circle (never Piper: everything it plays was rendered before), and
runs the one loop that owns the engine: `device.pump` on the real clock, the same pump the
simulator runs. A part that fails to start is loud (fault tone, LED, a line in the status the
admin page shows) and the box carries on with what works.

What anyone saves reaches the box without a restart: the config is read again (the same
layers as at start) when the admin page sends `reload` and when a watched file changes
(`device.reloading`). Volume and its cap apply at once; the circle, listening, buttons, LEDs
and box name wait for the running circle to end (`status()["pending"]` says what waits). A
config that does not validate is a fault, and the last good one stays.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device import sdnotify, signals
from device.config import Config, ConfigError
from device.content import (
    Circle,
    ContentError,
    cache_for,
    load_circle,
    rendered_matches,
    resolve_script,
)
from device.datafolder import DataFolder
from device.engine import AT_REST, ListeningChanged
from device.errors import UserFacingError
from device.fsutil import atomic_write_text
from device.pump import Pump, build_box, build_engine
from device.reloading import (
    ConfigSource,
    changes_at_once,
    changes_between_circles,
    changes_needing_restart,
    check_phone_time,
    circle_files,
    file_signature,
    installed_release,
    standard_source,
)
from device.script import ScriptError, parse_script
from device.usage import SessionTally, UsageStore

log = logging.getLogger("circlebox.runtime")
RELOAD_CHECK_S = 2.0  # how often the box looks at its config and circle files for changes
POLL_PLAYING_S = 0.01
# Stopped (systemd restarts the box after every install) while a box message is being said:
# finish it first, within systemd's 10 s stop timeout ("Installing. Keep the power on." was cut
# off mid-word; heard in QEMU)
FINISH_MESSAGE_S = 6.0
IDLE_WAKE_S = 0.25
CONTROL_WAIT_S = 1.5  # a control request waits this long for the box's thread (the client waits 2 s)
MIC_RETRY_S = 10.0
Reply = dict[str, Any]


class Runtime:
    def __init__(self, config: Config, *, pin_factory: Any | None = None, speaker: Any | None = None,
                 control: bool = True, listening: bool = True, log_sinks: list[Any] | None = None,
                 config_source: ConfigSource | None = None,
                 open_mic: Callable[[str | None], Any] | None = None) -> None:
        """`config_source` re-reads the config with the same layers as `config` was built from
        (default: the standard layers for this data folder); `open_mic` opens the microphone
        (default: arecord on the configured device; a WAV file in tests)."""
        self.config = config  # in force: everything but volume changes only between circles
        self._latest = config  # the last good config read; waits here for the circle to end
        self._started_with = config
        self.folder = DataFolder(config.data_dir)
        self.data_dir = config.data_dir
        self._source = config_source or standard_source(config.data_dir)
        self._open_mic = open_mic
        self._pin_factory = pin_factory
        self._speaker = speaker
        self._want_control = control
        self._want_listening = listening
        self._extra_sinks = list(log_sinks or [])
        self.faults: list[str] = []
        self.health: dict[str, str] = {}
        self.box: Any = None
        self.pump: Pump | None = None
        self.clock: Any = None
        self.buttons: Any = None
        self.leds: Any = None
        self.control: Any = None
        self.usage: UsageStore | None = None
        self.training: Any = None  # device.training_log.TrainingLog: rehearsals only
        self.circle: Circle | None = None
        self.listener: Any = None
        self.listening_status: dict[str, Any] = {"commands": "off: listening not started"}
        self.pending: list[str] = []  # plain words: what waits for the running circle to end
        self.restart_needed: list[str] = []
        self.config_loaded_at: str | None = None
        self._circle_stale = False  # the circle's files changed: look again between circles
        self._circle_running = False  # between session_started and session_finished
        self.course: Any = None  # device.course_play.CoursePlay: where session.course stands, or None
        self._course_store: Any = None  # device.course_position.PositionStore (this process writes it)
        self._course_advance: Any = None  # its sink on the engine's log (device.course_position)
        self._course_stale = False  # the course moved on: load the next meeting between circles
        self._meeting_key: tuple | None = None  # (course, version, position) the engine was built for
        self._intro: tuple[str, ...] = ()  # the meeting's announcement, played before step 1
        self._session_fields: dict[str, Any] | None = None
        self._snapshot: dict[str, Any] = {"state": "starting"}
        self._signature: tuple = ()
        self._system_signature: tuple = ()
        self._stop = threading.Event()
        self._mic_stop = threading.Event()
        self._mic_thread: threading.Thread | None = None
        self.ready = threading.Event()
        self._lock_fd: int | None = None

    # -- start-up -----------------------------------------------------------------------------

    def _fault(self, part: str, message: str) -> None:
        text = f"{part}: {message}"
        log.error("fault: %s", text)
        self.health[part] = message
        if text not in self.faults:
            self.faults.append(text)
        if self.box is not None:
            self.box.fault(text)

    def _clear_fault(self, part: str, keep: Callable[[str], bool] = lambda text: False) -> None:
        """A part works again: its old complaints leave the status (those `keep` names stay)."""
        def gone(text: str) -> bool:
            return text.startswith(f"{part}:") and not keep(text)

        self.faults = [f for f in self.faults if not gone(f)]
        if self.box is not None:
            self.box.faults = [f for f in self.box.faults if not gone(f)]
        if not any(f.startswith(f"{part}:") for f in self.faults):
            self.health[part] = "ok"

    def load_circle(self) -> Circle:
        """The configured circle (or the course meeting's), or the last good one if it is broken
        or unrendered."""
        play = self._course_now()
        name = play.circle if play is not None else self.config.session.script
        self._circle_name = name
        try:
            circle = self._load_meeting(play, name)
        except (ScriptError, ContentError) as exc:
            self._fault("circle", str(exc))
            last = self.folder.last_good(Path(name).stem)
            if not last.exists():
                raise
            loaded = parse_script(last.read_text(encoding="utf-8"), f"{last} (last good)")
            circle = self._load_last_good(loaded)
            self.health["circle"] = f"using the last good version ({exc})"
            return circle
        atomic_write_text(self.folder.last_good(circle.loaded.script.script), circle.loaded.text)
        self.health["circle"] = "ok"
        self._note_stale(circle)
        return circle

    def _note_stale(self, circle: Circle) -> None:
        """A circle rendered by an earlier version of the box plays, with a fault line that says
        how to bring its sounds up to date (device.content.load_circle)."""
        if circle.stale_note:
            self._fault("circle", circle.stale_note)

    # -- courses (device.course_play, device.course_position) ------------------------------------

    def _course_now(self) -> Any:
        """Where the configured course stands (None: no course, or it cannot be used: a fault
        says why and the configured circle plays)."""
        from device.course import CourseError, resolve_course
        from device.course_play import play_for
        from device.course_position import CourseAdvance, PositionStore

        name = self.config.session.course
        if not name:
            self.course = self._course_store = self._course_advance = None
            self._clear_fault("course")
            self.health.pop("course", None)
            return None
        try:
            source = resolve_course(name, self.folder)
        except CourseError as exc:
            self._fault("course", f"cannot use course '{name}', playing circle {self.config.session.script} "
                                  f"instead: {exc}")
            self.course = None
            return None
        store = self._course_store
        if store is None or store.course != source.course:
            store = PositionStore(source.course, self.folder, wall_now=self.clock.now)
            self._course_store = store
            self._course_advance = CourseAdvance(store, on_advance=self._on_course_advance)
            self._clear_fault("course")
            if store.fault:
                self._fault("course", store.fault)
            if store.note:
                log.warning("course: %s", store.note)
        self.course = play_for(source, store.position, store.fault, store.note)
        self.health.setdefault("course", "ok")
        return self.course

    def _load_meeting(self, play: Any, name: str) -> Circle:
        """The circle `name` with the meeting's announcement (a missing one is a fault only)."""
        from device.course_play import load_meeting

        loaded = load_meeting(play, name, self.folder, self.config.audio.system_language)
        self._intro, self._session_fields = loaded.intro, loaded.session_fields
        self._meeting_key = _meeting_key(play)
        if loaded.fault:
            self._fault("course", loaded.fault)
        return loaded.circle

    def _on_course_advance(self, position: int) -> None:
        """A session of the course was held: the next meeting loads once the circle has ended."""
        self._course_stale = True

    def _course_sink(self, event: str, fields: dict[str, Any], t: float) -> None:
        if self._course_advance is not None:
            self._course_advance.on_log(event, fields, t)

    def _control_course_session(self, request: dict[str, Any]) -> Reply:
        return self._on_box_thread(lambda: self.choose_meeting(request.get("index")),
                                   lambda: {"ok": False, "error": "the box is busy; try again"})

    def choose_meeting(self, index: object) -> Reply:
        """The facilitator chose another meeting of the course (between circles only)."""
        if self.course is None or self._course_store is None:
            return {"ok": False, "error": "the box is not running a course (set one on the admin page)"}
        if not self._between_circles():
            return {"ok": False, "error": "a circle is running: choose another session after it ends "
                                          "(or stop it first)"}
        if isinstance(index, bool) or not isinstance(index, int):
            return {"ok": False, "error": "index must be the number of a meeting in the course's plan (0 is the first)"}
        try:
            self._course_store.choose(index)
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        except OSError as exc:
            return {"ok": False, "error": f"could not save where the course stands: {exc}"}
        self._course_stale = False
        self._switch_circle()
        return {"ok": True, "position": self.course.position, "label": self.course.meeting.label}

    def _load_last_good(self, loaded: Any) -> Circle:
        """The last good text's sounds are in the box's cache or in the content release."""
        language = self.config.audio.system_language
        try:
            return load_circle(loaded, self.folder.cache, system_language=language, data=self.folder)
        except ContentError:
            return load_circle(loaded, self.folder.installed_cache, system_language=language, data=self.folder)

    def _open_speaker(self) -> Any:
        if self._speaker is not None:
            speaker = self._speaker
        else:
            from audio.speaker import NoAudioDevice, PygameSpeaker

            audio = self.config.audio
            try:
                speaker = PygameSpeaker(audio.sample_rate, audio.buffer_samples, audio.driver)
            except NoAudioDevice as exc:
                self._fault("speaker", str(exc))
                from audio.silent import SilentSpeaker

                speaker = SilentSpeaker(time.monotonic)
        self.health.setdefault("speaker", "ok")
        return speaker

    def _open_gpio(self) -> None:
        from device.buttons import make_pin_factory

        factory = self._pin_factory
        if factory is None:
            try:
                factory = make_pin_factory(self.config.buttons.pin_factory)
            except Exception as exc:  # gpiozero raises several kinds when there is no GPIO
                self._fault("buttons", f"no GPIO ({exc}); only the admin panel can press buttons")
                factory = make_pin_factory("mock")
        self.pin_factory = factory
        self._open_buttons()
        self._open_leds()

    def _open_buttons(self) -> None:
        """The buttons of the config in force (again after a new button map: the old pins first)."""
        from device.buttons import GpioButtons

        if self.buttons is not None:
            with contextlib.suppress(Exception):
                self.buttons.close()
            self.buttons = None
        try:
            self.buttons = GpioButtons(self.config.buttons, self.box.dispatch, self.pin_factory)
        except Exception as exc:
            self._fault("buttons", str(exc))
            return
        self._clear_fault("buttons", keep=lambda text: "no GPIO" in text)

    def _open_leds(self) -> None:
        from device.leds import StatusLeds

        if self.leds is not None:
            with contextlib.suppress(Exception):
                self.leds.close()
            self.leds = self.box.leds = None
        try:
            self.leds = StatusLeds(self.config.leds.status, self.config.leds.help, self.pin_factory)
        except Exception as exc:
            self._fault("leds", str(exc))
            return
        self.box.leds = self.leds
        self._clear_fault("leds")

    def start(self) -> None:
        from device.wallclock import WallClock

        self.clock = WallClock(self.folder.clock)
        self.circle = self.load_circle()
        self._signature = self._watch_signature()
        self._system_signature = self._system_prompts_signature()
        speaker = self._open_speaker()
        self.usage = UsageStore(self.folder.usage)
        self.tally = SessionTally(self.usage, box=self.config.box.name, wall_now=self.clock.now)
        from device.training_log import TrainingLog, TrainingTally

        self.training = TrainingLog(self.folder.training_log)
        self.training_tally = TrainingTally(self.training, box=self.config.box.name, wall_now=self.clock.now)
        # the usage store first: once the journal says a circle ended, a power cut cannot lose it
        # then the course: once the journal says a session ended, where the course stands is on disk too
        self.box = build_box(self.config, self.circle, speaker, clock=time.monotonic, listening=False,
                             sinks=[self.tally.on_log, self.training_tally.on_log, self._course_sink,
                                    self._journal, self._circle_lock, *self._extra_sinks],
                             intro=self._intro, session_fields=self._session_fields)
        self.pump = Pump(self.box)
        self.config_loaded_at = self._wall_iso()
        for fault in self.faults:
            self.box.fault(fault)
        self.box.hooks["setup_code"] = self._say_setup_code
        self._open_gpio()
        if self._want_control:
            self._start_control()
        self._start_listening()
        if self.leds is not None:
            self.leds.show("fault" if self.faults else "idle")
        speaker.play("bell:fault" if self.faults else "bell:chime")
        self._publish()
        sdnotify.notify("READY=1\nSTATUS=" + ("ready" if not self.faults else f"ready with faults: {self.faults[0]}"))
        self.ready.set()

    def _start_control(self) -> None:
        from device.control import ControlServer

        try:
            self.control = ControlServer(self.folder.control_socket, self.status, self.box.dispatch,
                                         announce=self._announce,
                                         handlers={"reload": self._control_reload,
                                                   "set_clock": self._control_set_clock,
                                                   "course_session": self._control_course_session}).start()
        except OSError as exc:
            self._fault("control", f"admin page cannot reach the box: {exc}")

    # -- listening ------------------------------------------------------------------------------

    def _start_listening(self) -> None:
        """Microphone pacing, if configured: frames on their own thread, through the pump."""
        self.listener = None
        if not self._want_listening:
            return
        section = self.config.listening  # a ListeningSection (device.config), or a plain mapping before it
        if not (section.get("enabled", False) if isinstance(section, dict) else section.enabled):
            self.listening_status = {"commands": "off: listening is not enabled in config"}
            self.health.pop("mic", None)
            return
        try:
            from device.listening import build_listener, listening_settings, open_arecord_mic
        except ImportError as exc:
            self._fault("mic", f"listening unavailable: {exc}")
            return
        try:
            settings = listening_settings(self.config.listening)
        except ValueError as exc:
            self._fault("mic", str(exc))
            return
        listener, why_no_commands = build_listener(settings)
        self.listening_status = {"commands": "on" if why_no_commands is None else f"off: {why_no_commands}"}
        self.listener = listener
        open_mic = self._open_mic or open_arecord_mic
        stop = self._mic_stop = threading.Event()
        box, pump = self.box, self.pump

        def post(item: Any) -> None:
            """Queue for the box, unless this microphone was stopped (settings changed) meanwhile."""
            box.post(lambda: None if stop.is_set() else box.process_item(item))

        def run_mic() -> None:
            while not stop.is_set():
                try:
                    mic = open_mic(settings.device)
                except Exception as exc:
                    post(lambda e=exc: self._fault("mic", f"{e}; retrying, buttons still work"))
                    stop.wait(MIC_RETRY_S)
                    continue
                post(ListeningChanged(True))
                post(lambda: self._clear_fault("mic"))
                try:
                    while not stop.is_set():
                        frame = mic.read_frame()
                        if frame is None:
                            raise RuntimeError("the microphone stopped sending audio")
                        pump.hear_frame(listener, frame)
                except Exception as exc:
                    pump.mic_lost(listener)
                    post(lambda e=exc: self._fault("mic", f"{e}; retrying, buttons still work"))
                finally:
                    mic.close()
                stop.wait(MIC_RETRY_S)

        self._mic_thread = threading.Thread(target=run_mic, name="mic", daemon=True)
        self._mic_thread.start()

    def _stop_listening(self) -> None:
        """Stop the microphone thread (new listening settings); the engine stops pacing by it."""
        self._mic_stop.set()
        if self._mic_thread is not None:
            self._mic_thread.join(timeout=2)  # a frame is 30 ms; a stalled device must not hold the box
            self._mic_thread = None
        self.listener = None
        if self.box.engine.listening:
            self.box.handle(ListeningChanged(False))
        self._clear_fault("mic")
        self.health.pop("mic", None)

    # -- requests from other processes -----------------------------------------------------------

    def _announce(self, sounds: tuple[str, ...], urgent: bool) -> None:
        """Box-level speech from another process (the USB updater), through our one stream."""
        from device.engine import Announce

        self.box.post(Announce(sounds, urgent))

    def _on_box_thread(self, work: Callable[[], Reply], fallback: Callable[[], Reply]) -> Reply:
        """Run `work` on the box's thread (which owns the engine and the clock) and return its
        reply; `fallback()` if the box does not get to it in time (it still runs later)."""
        done = threading.Event()
        out: dict[str, Reply] = {}

        def call() -> None:
            try:
                out["reply"] = work()
                self._publish()  # the status read right after this reply already shows its effect
            except Exception as exc:  # a bug here must not stop the box's loop
                log.exception("control request failed")
                out["reply"] = {"ok": False, "error": f"the box could not do it: {exc}"}
            finally:
                done.set()

        self.box.post(call)
        return out["reply"] if done.wait(CONTROL_WAIT_S) else fallback()

    def _control_reload(self, request: dict[str, Any]) -> Reply:
        def busy() -> Reply:
            return {"ok": True, "when": "after_circle" if self._circle_running else "now"}

        return self._on_box_thread(self.reload, busy)

    def _control_set_clock(self, request: dict[str, Any]) -> Reply:
        return self._on_box_thread(lambda: self.set_clock(request.get("time")),
                                   lambda: {"ok": False, "error": "the box is busy; try again"})

    def set_clock(self, value: object) -> Reply:
        """Set the box's wall clock to a time a phone sent (boxes have no clock battery)."""
        try:
            seconds = check_phone_time(value, self.clock.read().time.timestamp())
            reading = self.clock.set_now(seconds, source="phone")
        except ValueError as exc:  # device.wallclock.ClockSetRefused is one
            return {"ok": False, "error": f"clock not set: {exc}"}
        when = reading.time.isoformat(timespec="seconds")
        self.box.emit("clock_set", {"time": when, "source": "phone"})
        return {"ok": True, "time": when, "trusted": reading.trusted}

    def _say_setup_code(self) -> None:
        """Two buttons held together: the technician hears the admin page's one-time setup code."""
        from device.engine import Announce

        try:
            code = self.folder.setup_code.read_text(encoding="utf-8").strip()
        except OSError:
            code = ""
        if self.folder.admin_password.exists():
            code = ""  # a password is set: the code is void (the admin page refuses it)
        if code.isdigit():
            sounds = ("sys:setup_code", *(f"sys:digit_{d}" for d in code), "sys:setup_code_again",
                      *(f"sys:digit_{d}" for d in code))
        else:
            sounds = ("sys:setup_code_used",)
        self.box.handle(Announce(sounds))

    # -- sinks ---------------------------------------------------------------------------------

    def _journal(self, event: str, fields: dict[str, Any], t: float) -> None:
        log.info("%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))

    def _circle_lock(self, event: str, fields: dict[str, Any], t: float) -> None:
        """flock(LOCK_SH) on <data>/circle.lock for a whole circle: the updater stages instead of
        switching releases while it cannot take the lock. A crash releases it with the process."""
        import fcntl

        if event == signals.SESSION_STARTED:
            self._circle_running = True
            if self._lock_fd is None:
                self._lock_fd = os.open(self.folder.circle_lock, os.O_RDONLY | os.O_CREAT, 0o644)
                fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        elif event == signals.SESSION_FINISHED:
            self._circle_running = False
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing drops the lock
                self._lock_fd = None

    # -- status ---------------------------------------------------------------------------------

    def _wall_iso(self) -> str:
        return self.clock.now()[0].isoformat(timespec="seconds")

    def _publish(self) -> None:
        box = self.box
        snap = box.status()
        snap["health"] = {**self.health, **snap.get("health", {})}
        snap["faults"] = list(dict.fromkeys([*self.faults, *box.faults]))
        snap["script"] = self.circle.loaded.script.script
        snap["script_version"] = self.circle.loaded.script.version
        countdown = getattr(box.engine, "countdown", None)  # device.engine adds it (the panel's timer)
        snap["countdown"] = countdown(box.clock()) if countdown is not None else None
        snap["pending"] = list(self.pending)
        from device.course_play import course_status

        store = self._course_store
        snap["course"] = course_status(self.course, store.current.held_indexes() if store is not None else None)
        snap["config_loaded_at"] = self.config_loaded_at
        snap["restart_needed"] = list(self.restart_needed)
        reading = self.clock.read()  # the panel offers "set the box clock" when it is untrusted or off
        snap["clock"] = {"time": reading.time.isoformat(timespec="seconds"), "trusted": reading.trusted}
        snap["volume_cap"] = box.engine.volume_cap
        listening = dict(self.listening_status)
        listener = self.listener
        if listener is not None:
            listening.update(listener.status())  # the live meter, and how loud the room is
        snap["listening"] = listening
        self._snapshot = snap

    def status(self) -> dict[str, Any]:
        """The last published status (any thread: the control socket reads it)."""
        return dict(self._snapshot)

    def current_status(self) -> dict[str, Any]:
        """The status as of now, including inputs just handled. On the box's own thread only
        (post it there), where nothing else changes the box meanwhile."""
        self._publish()
        return self.status()

    # -- the loop --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._mic_stop.set()
        if self.box is not None:
            self.box.post(lambda: None)  # wake the loop

    def run(self) -> None:
        """The loop: the pump on the real clock, the watchdog, and settings that changed; until stop()."""
        box, pump = self.box, self.pump
        watchdog = sdnotify.watchdog_interval_s()
        last_ping = last_check = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = POLL_PLAYING_S if box.engine.playing is not None else IDLE_WAKE_S
            deadline = box.next_wake()
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - now))
            items = []
            with contextlib.suppress(queue.Empty):
                items.append(box.inbox.get(timeout=timeout))
            pump.turn(items)
            now = time.monotonic()
            if watchdog is not None and now - last_ping >= watchdog:
                sdnotify.notify("WATCHDOG=1")
                last_ping = now
            if now - last_check >= RELOAD_CHECK_S:
                last_check = now
                self._guarded(self._reload_if_files_changed)
            if self._has_pending() and self._between_circles():
                self._guarded(self.apply_pending)
            self._publish()
        self._finish_box_message()

    def _finish_box_message(self) -> None:
        """A box message (setup code, update progress) being said at rest is said to its end,
        for at most FINISH_MESSAGE_S; a circle's own sound is not waited for."""
        box, end = self.box, time.monotonic() + FINISH_MESSAGE_S
        while box.engine.state in AT_REST and box.engine.playing is not None and time.monotonic() < end:
            items = []
            with contextlib.suppress(queue.Empty):
                items.append(box.inbox.get(timeout=POLL_PLAYING_S))
            self.pump.turn(items)

    def _guarded(self, work: Callable[[], Any]) -> None:
        """Settings work must never stop a circle: a failure is a fault line, the loop goes on."""
        try:
            work()
        except Exception as exc:
            log.exception("applying settings failed")
            self._fault("settings", f"could not apply the new settings: {exc}")

    # -- settings and circle changes, without a restart -----------------------------------------

    def _watch_signature(self) -> tuple:
        """Every file the box's settings and circle come from, by path and mtime (cheap: stat only)."""
        name = self._latest.session.script
        from device.language_packs import pack_files

        files = [*self._source.files, self.folder.admin_config, *self._course_files(),
                 *circle_files(name, self.circle.loaded.script.script, self.folder),
                 *pack_files(self.folder, self._latest.audio.system_language)]
        return (installed_release(self.folder), file_signature(files))

    def _course_files(self) -> list[Path]:
        """The course's files (a new copy, an edit, a bundle) and the meeting's circle and
        announcement: a change is looked at between circles."""
        name = self._latest.session.course
        if not name:
            return []
        from device.content import manifest_path
        from device.course import course_candidates
        from device.course_play import announcement_set

        paths = [self.folder.course(name), self.folder.installed_courses / f"{name}.yaml",
                 *(path for path, _origin in course_candidates(name, self.folder)),
                 manifest_path(self.folder.cache, announcement_set(name)),
                 manifest_path(self.folder.installed_cache, announcement_set(name))]
        if self.course is not None:
            paths += circle_files(self._circle_name, self.circle.loaded.script.script, self.folder)
        return paths

    def _system_prompts_signature(self) -> tuple:
        """The box's own prompts: the system sets, and the language pack the latest config
        names (a new take on the admin page, or a language_pack bundle, changes it)."""
        from device.language_packs import pack_files
        from device.system_prompts import system_manifest_path

        language = self._latest.audio.system_language
        return (language, file_signature([system_manifest_path(self.folder.cache),
                                          system_manifest_path(self.folder.installed_cache),
                                          *pack_files(self.folder, language)]))

    def _reload_if_files_changed(self) -> bool:
        signature = self._watch_signature()
        if signature == self._signature:
            return False
        self._signature = signature
        self.reload()
        return True

    def reload(self) -> Reply:
        """Read the config again (the same layers as at start) and look at the circle's files.

        Volume and its cap apply at once; the rest is pending until the running circle ends
        (now, when none runs). A config that does not validate is a fault, and the box keeps
        the last good one. Runs on the box's thread; the reply is the control socket's.
        """
        try:
            new = self._source.load()
        except (ConfigError, UserFacingError, OSError) as exc:
            message = f"kept the last good settings: {exc}"
            self._fault("settings", message)
            return {"ok": False, "error": message}
        self._clear_fault("settings")
        old = self._latest
        if changes_at_once(old, new):
            self._apply_volume(old, new)
        self._latest = new
        self.config_loaded_at = self._wall_iso()
        self.restart_needed = changes_needing_restart(self._started_with, new)
        self._circle_stale = True
        self._signature = self._watch_signature()
        self.pending = self._pending_items()
        log.info("settings read again; to apply between circles: %s", ", ".join(self.pending) or "nothing")
        return {"ok": True, "when": "after_circle" if self._circle_running and self.pending else "now"}

    def _apply_volume(self, old: Config, new: Config) -> None:
        """The new volume (or cap) at once: the speaker's gain for what plays next, the engine's level."""
        engine = self.box.engine
        engine.volume_cap = new.audio.volume_cap
        engine.volume_step = new.audio.volume_step
        level = new.audio.volume if new.audio.volume != old.audio.volume else engine.volume
        engine.volume = round(min(level, engine.volume_cap), 2)
        self.box.speaker.set_volume(engine.volume)
        self.box.emit(signals.VOLUME, {"level": engine.volume, "source": "settings"})

    def _pending_items(self) -> list[str]:
        items = changes_between_circles(self.config, self._latest)
        if self._latest.session.course != self.config.session.course:
            items.append(f"course {self._latest.session.course or '(none)'}")
        if self.course is not None and self._latest.session.course == self.config.session.course:
            if self._circle_changed(self._circle_name):  # the course's meeting, or the course itself
                items.append(f"course {self.course.course.course}")
        elif self._latest.session.script == self._circle_name and self._circle_changed():
            items.append(f"circle {self.circle.loaded.script.script} (new version)")
        return items

    def _circle_changed(self, name: str | None = None) -> bool:
        """Is there another version of the circle to load (or new box prompts)? Cheap: the script
        text only; a broken one is a fault at once, and the running version stays. A course:
        any change of its files is looked at again (cheap: it is a short list)."""
        loaded = self.circle.loaded
        if self._system_prompts_signature() != self._system_signature:
            return True
        if name is not None and self.course is not None:
            return True
        try:
            candidate = resolve_script(name or self._latest.session.script, self.folder)
        except (ScriptError, ContentError) as exc:
            self._fault("circle", f"kept version {loaded.script.version}: {exc}")
            self._circle_stale = False
            return False
        if candidate.text == loaded.text and rendered_matches(candidate, cache_for(candidate, self.folder)):
            self._circle_stale = False
            return False
        return True

    def _has_pending(self) -> bool:
        return self._latest is not self.config or self._circle_stale or self._course_stale

    def _between_circles(self) -> bool:
        engine = self.box.engine
        return not self._circle_running and engine.state in AT_REST and engine.playing is None

    def apply_pending(self) -> list[str]:
        """Apply what waited for the circle to end; returns what changed, in plain words."""
        old, new = self.config, self._latest
        self.config = new
        applied = []
        course_moved = self._course_stale or new.session.course != old.session.course
        self._course_stale = False
        if (new.session.script != old.session.script or self._circle_stale or course_moved) and self._switch_circle():
            applied.append(f"circle {self.circle.loaded.script.script}")
        if changes_between_circles(old, new):
            if new.buttons != old.buttons:
                self._open_buttons()
                applied.append("button map")
            if new.leds != old.leds:
                self._open_leds()
                if self.leds is not None:
                    self.leds.show(self.box.engine.led)
                applied.append("status lights")
            if new.listening != old.listening:
                self._stop_listening()
                self._start_listening()
                applied.append("listening settings")
            if new.box != old.box:
                self.tally.box = self.training_tally.box = new.box.name
                applied.append("box name")
        self.pending = []
        self._circle_stale = False
        self._signature = self._watch_signature()
        if applied:
            self.box.emit(signals.SETTINGS_APPLIED, {"what": applied})
        return applied

    def _switch_circle(self) -> bool:
        """Load the configured circle (or the course meeting's) if it is another one, another
        meeting or a new version, fully rendered; keep the one that plays if not (a fault says why)."""
        play = self._course_now()
        name = play.circle if play is not None else self.config.session.script
        loaded = self.circle.loaded
        system = self._system_prompts_signature()
        same_name = name == self._circle_name and _meeting_key(play) == self._meeting_key
        had_intro = self._intro
        # a meeting loaded without its announcement (not rendered yet) looks again: the admin
        # page renders it in the background after a course is saved
        announcement_awaited = play is not None and play.meeting is not None and not had_intro
        try:
            if same_name and system == self._system_signature and not announcement_awaited:
                candidate = resolve_script(name, self.folder)
                if candidate.text == loaded.text and rendered_matches(candidate, cache_for(candidate, self.folder)):
                    return False  # the same circle still plays: no need to read its sounds again
            self._clear_fault("course", keep=lambda text: "announcement" not in text)  # the new meeting's own
            new = self._load_meeting(play, name)
        except (ScriptError, ContentError) as exc:
            self._fault("circle", f"kept version {loaded.script.version} of {loaded.script.script}: {exc}")
            return False
        unchanged = new.loaded.text == loaded.text and system == self._system_signature and self._intro == had_intro
        if same_name and unchanged:
            return False
        self._system_signature = system
        self.circle = new
        self._circle_name = name
        self.box.speaker.load(new.bank)
        self.box.sounds = new.bank
        old_engine = self.box.engine
        self.box.engine = build_engine(self.config, new.loaded.script, listening=old_engine.listening,
                                       volume=old_engine.volume, intro=self._intro,
                                       session_fields=self._session_fields)
        atomic_write_text(self.folder.last_good(new.loaded.script.script), new.loaded.text)
        self._clear_fault("circle")
        self._note_stale(new)
        loaded_fields = {"script": new.loaded.script.script, "version": new.loaded.script.version}
        if self.course is not None and self.course.meeting is not None:
            loaded_fields.update(course=self.course.course.course, meeting=self.course.meeting.label)
        self.box.emit(signals.CIRCLE_LOADED, loaded_fields)
        return True

    def maybe_reload(self) -> bool:
        """If a settings or circle file changed: read them again and, between circles, switch.
        True when another circle (or version) was loaded."""
        if not self._reload_if_files_changed() or not self._between_circles():
            return False
        return any(item.startswith("circle") for item in self.apply_pending())

    def close(self) -> None:
        self._stop.set()
        self._mic_stop.set()
        for part in (self.control, self.buttons, self.leds):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        if self.box is not None:
            with contextlib.suppress(Exception):
                self.box.speaker.close()
        if self.usage is not None:
            self.usage.close()
        if self.training is not None:
            self.training.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def _meeting_key(play: Any) -> tuple | None:
    """Which meeting an engine was built for: another one needs a new engine (its announcement
    and session fields), even when it plays the same circle."""
    if play is None:
        return None
    return (play.course.course, play.course.version, play.position)
