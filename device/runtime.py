"""The device runtime: the box in real time, with its hardware at the edges.

Builds the adapters from config (speaker, buttons, LEDs, microphone, usage store, control
socket), loads the rendered circle (never Piper: everything it plays was rendered before), and
runs the one loop that owns the engine. A part that fails to start is loud (fault tone, LED,
a line in the status the admin page shows) and the box carries on with what works.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from device import sdnotify
from device.box import Box
from device.config import Config
from device.content import Circle, ContentError, cache_dir, load_circle, resolve_script
from device.engine import FINISHED, IDLE, Engine, ListeningChanged
from device.fsutil import atomic_write_text
from device.script import ScriptError, parse_script
from device.usage import SessionTally, UsageStore

log = logging.getLogger("circlebox.runtime")
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
        self._script_mtime: float | None = None
        self._stop = threading.Event()
        self._mic_thread: threading.Thread | None = None
        self.ready = threading.Event()

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
        cache = cache_dir(self.data_dir)
        try:
            loaded = resolve_script(name, self.data_dir)
            circle = load_circle(loaded, cache)
        except (ScriptError, ContentError) as exc:
            self._fault("circle", str(exc))
            last = self._last_good_path(Path(name).stem)
            if not last.exists():
                raise
            loaded = parse_script(last.read_text(encoding="utf-8"), f"{last} (last good)")
            circle = load_circle(loaded, cache)
            self.health["circle"] = f"using the last good version ({exc})"
            return circle
        atomic_write_text(self._last_good_path(loaded.script.script), loaded.text)
        self.health["circle"] = "ok"
        if loaded.path is not None:
            with contextlib.suppress(OSError):
                self._script_mtime = loaded.path.stat().st_mtime
        return circle

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
        speaker = self._open_speaker(self.circle.bank)
        self.usage = UsageStore(self.data_dir / "usage.db")
        clock = WallClock(self.data_dir / "state" / "clock.json")
        self.tally = SessionTally(self.usage, box=self.config.box.name, wall_now=clock.now)
        self.box = Box(self._new_engine(), speaker, clock=time.monotonic,
                       sinks=[self._journal, self.tally.on_log, self._circle_lock, *self._extra_sinks],
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
            self.control = ControlServer(socket_path(self.data_dir), self.status, self.box.dispatch).start()
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
            from device.simulate import _deliver_heard

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
                            self.box.post(lambda h=heard: _deliver_heard(self.box, h))
                except Exception as exc:
                    self.box.post(ListeningChanged(False))
                    self.box.post(lambda e=exc: self._fault("mic", f"{e}; retrying, buttons still work"))
                finally:
                    mic.close()
                self._stop.wait(10)

        self._mic_thread = threading.Thread(target=run_mic, name="mic", daemon=True)
        self._mic_thread.start()

    def _say_setup_code(self) -> None:
        """Two buttons held together: the technician hears the admin page's one-time setup code."""
        from device.engine import Announce

        path = self.data_dir / "secrets" / "setup-code"
        try:
            code = path.read_text(encoding="utf-8").strip()
        except OSError:
            code = ""
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
        """A file that says a circle is running: the updater never switches releases under one."""
        lock = self.data_dir / "run" / "circle-running"
        if event == "session_started":
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.write_text(str(fields.get("script", "")), encoding="utf-8")
        elif event == "session_finished":
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

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

    def maybe_reload(self) -> bool:
        """Between circles, switch to a newly saved and rendered version; keep the old one if not."""
        loaded = self.circle.loaded
        path = loaded.path
        try:
            mtime = path.stat().st_mtime if path is not None else None
        except OSError:
            mtime = None
        if mtime is None or mtime == self._script_mtime:
            return False
        self._script_mtime = mtime
        try:
            new = load_circle(resolve_script(self.config.session.script, self.data_dir), cache_dir(self.data_dir))
        except (ScriptError, ContentError) as exc:
            self._fault("circle", f"kept version {loaded.script.version}: {exc}")
            return False
        self.circle = new
        self.box.speaker.load(new.bank)
        self.box.sounds = new.bank
        self.box.engine = self._new_engine()
        atomic_write_text(self._last_good_path(new.loaded.script.script), new.loaded.text)
        self.health["circle"] = "ok"
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
