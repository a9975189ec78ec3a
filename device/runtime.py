"""The device runtime: the box in real time, with its hardware at the edges.

Builds the adapters from config (speaker, buttons, LEDs, microphone, usage store, control
socket), loads the rendered circle (never Piper: everything it plays was rendered before), and
runs the one loop that owns the engine. A part that fails to start is loud (fault tone, LED,
a line in the status the admin page shows) and the box carries on with what works.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

from device import sdnotify
from device.box import Box
from device.config import Config
from device.content import (
    Circle,
    ContentError,
    cache_dir,
    cache_for,
    load_circle,
    load_configured_circle,
    rendered_matches,
    resolve_script,
)
from device.engine import FINISHED, IDLE, Engine, ListeningChanged
from device.fsutil import atomic_write_text
from device.script import ScriptError, parse_script
from device.usage import SessionTally, UsageStore, store_path

log = logging.getLogger("circlebox.runtime")
CIRCLE_LOCK = "circle.lock"  # the updater's contract (device/update/seams.py)
RELOAD_CHECK_S = 2.0
POLL_PLAYING_S = 0.01
IDLE_WAKE_S = 0.25


class Runtime:
    def __init__(self, config: Config, *, pin_factory: Any | None = None, speaker: Any | None = None,
                 control: bool = True, listening: bool = True, log_sinks: list[Any] | None = None) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self._pin_factory = pin_factory
        self._speaker = speaker
        self._want_control = control
        self._want_listening = listening
        self._extra_sinks = list(log_sinks or [])
        self.faults: list[str] = []
        self.health: dict[str, str] = {}
        self.box: Box | None = None
        self.buttons: Any = None
        self.leds: Any = None
        self.control: Any = None
        self.usage: UsageStore | None = None
        self.circle: Circle | None = None
        self.listening_status: dict[str, Any] = {"commands": "off: listening not started"}
        self._snapshot: dict[str, Any] = {"state": "starting"}
        self._signature: tuple = ()
        self._stop = threading.Event()
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

    def _last_good_path(self, script_id: str) -> Path:
        return self.data_dir / "state" / "last-good" / f"{script_id}.yaml"

    def load_circle(self) -> Circle:
        """The configured circle, or the last good one if the configured one is broken or unrendered."""
        name = self.config.session.script
        try:
            circle = load_configured_circle(name, self.data_dir)
        except (ScriptError, ContentError) as exc:
            self._fault("circle", str(exc))
            last = self._last_good_path(Path(name).stem)
            if not last.exists():
                raise
            loaded = parse_script(last.read_text(encoding="utf-8"), f"{last} (last good)")
            circle = self._load_last_good(loaded)
            self.health["circle"] = f"using the last good version ({exc})"
            return circle
        atomic_write_text(self._last_good_path(circle.loaded.script.script), circle.loaded.text)
        self.health["circle"] = "ok"
        return circle

    def _load_last_good(self, loaded: Any) -> Circle:
        """The last good text's sounds are in the box's cache or in the content release."""
        from device.content import installed_content_dir

        try:
            return load_circle(loaded, cache_dir(self.data_dir))
        except ContentError:
            return load_circle(loaded, installed_content_dir(self.data_dir) / "cache")

    def _open_speaker(self, bank: Any) -> Any:
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
        speaker.load(bank)
        speaker.set_volume(self.config.audio.volume)
        self.health.setdefault("speaker", "ok")
        return speaker

    def _open_gpio(self) -> None:
        from device.buttons import GpioButtons, make_pin_factory
        from device.leds import StatusLeds

        factory = self._pin_factory
        if factory is None:
            try:
                factory = make_pin_factory(self.config.buttons.pin_factory)
            except Exception as exc:  # gpiozero raises several kinds when there is no GPIO
                self._fault("buttons", f"no GPIO ({exc}); only the admin panel can press buttons")
                factory = make_pin_factory("mock")
        self.pin_factory = factory
        try:
            self.buttons = GpioButtons(self.config.buttons, self.box.dispatch, factory)
            self.health.setdefault("buttons", "ok")
        except Exception as exc:
            self._fault("buttons", str(exc))
        try:
            self.leds = StatusLeds(self.config.leds.status, self.config.leds.help, factory)
            self.box.leds = self.leds
        except Exception as exc:
            self._fault("leds", str(exc))

    def start(self) -> None:
        from device.wallclock import WallClock

        self.circle = self.load_circle()
        self._signature = self._content_signature()
        speaker = self._open_speaker(self.circle.bank)
        self.usage = UsageStore(store_path(self.data_dir))
        clock = WallClock(self.data_dir / "state" / "clock.json")
        self.tally = SessionTally(self.usage, box=self.config.box.name, wall_now=clock.now)
        # the usage store first: once the journal says a circle ended, a power cut cannot lose it
        self.box = Box(self._new_engine(), speaker, clock=time.monotonic,
                       sinks=[self.tally.on_log, self._journal, self._circle_lock, *self._extra_sinks],
                       sounds=self.circle.bank)
        for fault in self.faults:
            self.box.fault(fault)
        self.box.hooks["setup_code"] = self._say_setup_code
        self._open_gpio()
        if self._want_control:
            self._start_control()
        if self._want_listening:
            self._start_listening()
        if self.leds is not None:
            self.leds.show("fault" if self.faults else "idle")
        speaker.play("bell:fault" if self.faults else "bell:chime")
        self._publish()
        sdnotify.notify("READY=1\nSTATUS=" + ("ready" if not self.faults else f"ready with faults: {self.faults[0]}"))
        self.ready.set()

    def _new_engine(self) -> Engine:
        audio = self.config.audio
        return Engine(self.circle.loaded.script, volume=audio.volume, volume_cap=audio.volume_cap,
                      volume_step=audio.volume_step, listening=False)

    def _start_control(self) -> None:
        from device.control import ControlServer, socket_path

        try:
            self.control = ControlServer(socket_path(self.data_dir), self.status, self.box.dispatch,
                                         announce=self._announce).start()
        except OSError as exc:
            self._fault("control", f"admin page cannot reach the box: {exc}")

    def _start_listening(self) -> None:
        """Microphone pacing, if configured: frames on their own thread, events into the box's queue."""
        if not self.config.listening.get("enabled", False):
            self.listening_status = {"commands": "off: listening is not enabled in config"}
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

        def run_mic() -> None:
            def deliver(heard: Any) -> None:
                # the listener counts audio time; place the event on the box's clock
                self.box.hear(heard, time.monotonic() - (listener.t - heard.t))

            while not self._stop.is_set():
                try:
                    mic = open_arecord_mic(settings.device)
                except Exception as exc:
                    self.box.post(lambda e=exc: self._fault("mic", f"{e}; retrying, buttons still work"))
                    self._stop.wait(10)
                    continue
                self.box.post(ListeningChanged(True))
                self.health["mic"] = "ok"
                try:
                    while not self._stop.is_set():
                        frame = mic.read_frame()
                        if frame is None:
                            raise RuntimeError("the microphone stopped sending audio")
                        playing = self.box.engine.playing is not None
                        for heard in listener.process(frame, box_playing=playing):
                            self.box.post(lambda h=heard: deliver(h))
                except Exception as exc:
                    for heard in listener.flush():  # close a speech segment the failure cut off
                        self.box.post(lambda h=heard: deliver(h))
                    self.box.post(ListeningChanged(False))
                    self.box.post(lambda e=exc: self._fault("mic", f"{e}; retrying, buttons still work"))
                finally:
                    mic.close()
                self._stop.wait(10)

        self._mic_thread = threading.Thread(target=run_mic, name="mic", daemon=True)
        self._mic_thread.start()

    def _announce(self, sounds: tuple[str, ...], urgent: bool) -> None:
        """Box-level speech from another process (the USB updater), through our one stream."""
        from device.engine import Announce

        self.box.post(Announce(sounds, urgent))

    def _say_setup_code(self) -> None:
        """Two buttons held together: the technician hears the admin page's one-time setup code."""
        from device.engine import Announce

        path = self.data_dir / "secrets" / "setup-code"
        try:
            code = path.read_text(encoding="utf-8").strip()
        except OSError:
            code = ""
        if (self.data_dir / "admin" / "password.json").exists():
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

        if event == "session_started" and self._lock_fd is None:
            self._lock_fd = os.open(self.data_dir / CIRCLE_LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        elif event == "session_finished" and self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the lock
            self._lock_fd = None

    # -- status ---------------------------------------------------------------------------------

    def _publish(self) -> None:
        box = self.box
        snap = box.status()
        snap["health"] = {**self.health, **snap.get("health", {})}
        snap["faults"] = list(dict.fromkeys([*self.faults, *box.faults]))
        snap["script"] = self.circle.loaded.script.script
        snap["script_version"] = self.circle.loaded.script.version
        listening = dict(self.listening_status)
        listener = getattr(self, "listener", None)
        if listener is not None:
            listening.update(level_db=round(listener.level_db, 1), noise_floor_db=round(listener.noise_floor_db, 1),
                             in_speech=listener.in_speech)
        snap["listening"] = listening
        self._snapshot = snap

    def status(self) -> dict[str, Any]:
        return dict(self._snapshot)

    # -- the loop --------------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        if self.box is not None:
            self.box.post(lambda: None)  # wake the loop

    def run(self) -> None:
        """The loop: inputs, end of sounds, deadlines, watchdog; until stop()."""
        box = self.box
        watchdog = sdnotify.watchdog_interval_s()
        last_ping = last_reload_check = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = IDLE_WAKE_S
            if box.engine.playing is not None:
                timeout = POLL_PLAYING_S
            deadline = box.next_wake()
            if deadline is not None:
                timeout = max(0.0, min(timeout, deadline - now))
            with contextlib.suppress(queue.Empty):
                box.process_item(box.inbox.get(timeout=timeout))
            box.process_pending()
            box.poll_audio()
            box.process_pending()
            box.tick_if_due()
            self._publish()
            now = time.monotonic()
            if watchdog is not None and now - last_ping >= watchdog:
                sdnotify.notify("WATCHDOG=1")
                last_ping = now
            if now - last_reload_check >= RELOAD_CHECK_S and box.engine.state in (IDLE, FINISHED):
                last_reload_check = now
                self.maybe_reload()

    def _content_signature(self) -> tuple:
        """What the circle depends on, by path and mtime: its script candidates and rendered sets."""
        from device.content import _candidates, draft_path, installed_content_dir, manifest_path

        script_id = self.circle.loaded.script.script
        paths = [*_candidates(self.config.session.script, self.data_dir), draft_path(self.data_dir, script_id),
                 manifest_path(cache_dir(self.data_dir), script_id),
                 manifest_path(installed_content_dir(self.data_dir) / "cache", script_id)]
        sig = []
        for path in paths:
            try:
                sig.append((str(path), path.stat().st_mtime_ns))
            except OSError:
                sig.append((str(path), None))
        return tuple(sig)

    def maybe_reload(self) -> bool:
        """Between circles, switch to a newly saved and fully rendered version; keep the old one if not."""
        signature = self._content_signature()
        if signature == self._signature:
            return False
        self._signature = signature
        loaded = self.circle.loaded
        try:
            candidate = resolve_script(self.config.session.script, self.data_dir)
            if candidate.text == loaded.text and rendered_matches(candidate, cache_for(candidate, self.data_dir)):
                return False  # the same circle still plays: no need to read its sounds again
            new = load_configured_circle(self.config.session.script, self.data_dir)
            if new.loaded.text == loaded.text:
                return False
        except (ScriptError, ContentError) as exc:
            self._fault("circle", f"kept version {loaded.script.version}: {exc}")
            return False
        self.circle = new
        self.box.speaker.load(new.bank)
        self.box.sounds = new.bank
        self.box.engine = self._new_engine()
        atomic_write_text(self._last_good_path(new.loaded.script.script), new.loaded.text)
        self.health["circle"] = "ok"
        self.faults = [f for f in self.faults if not f.startswith("circle:")]
        self.box.faults = [f for f in self.box.faults if not f.startswith("circle:")]
        self.box.emit("circle_loaded", {"script": new.loaded.script.script, "version": new.loaded.script.version})
        return True

    def close(self) -> None:
        self._stop.set()
        for part in (self.control, self.buttons, self.leds):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        if self.box is not None:
            with contextlib.suppress(Exception):
                self.box.speaker.close()
        if self.usage is not None:
            self.usage.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
