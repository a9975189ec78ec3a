"""Shared helpers for the admin page tests (no tests here): config, login, a fake runtime.

The fake runtime is served by the real `device.control.ControlServer` on a real Unix socket,
so the admin page talks the same JSON-lines protocol as with the real box.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from device.config import load_config
from device.control import ControlServer, socket_path
from local_admin import create_app
from local_admin.security import RateLimiter

PASSWORD = "blue river morning tea"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_config(data_dir: Path, **sections: Any):
    overrides: dict[str, Any] = {
        "paths": {"data_dir": str(data_dir)},
        "box": {"name": "clinic-north"},
    }
    for key, value in sections.items():
        overrides[key] = value
    return load_config(etc_path=None, overrides=overrides, environ={})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeRender:
    """Stands in for audio.render.render_script where a test is about the editor, not Piper."""

    def __init__(self, fail: str | None = None, gate: threading.Event | None = None):
        self.fail = fail
        self.gate = gate
        self.calls: list[tuple[str, int]] = []

    def __call__(self, loaded, cache_dir, *, voices_dir=None, settings=None, progress=None):
        prompts = loaded.script.prompts()
        self.calls.append((loaded.script.script, loaded.script.version))
        for done, prompt_id in enumerate(prompts, start=1):
            if self.gate is not None:
                self.gate.wait(10)
            if self.fail and done == 2:
                raise RuntimeError(self.fail)
            if progress:
                progress(done, len(prompts), prompt_id, False)

        return SimpleNamespace(rendered=list(prompts), reused=[])


def make_app(
    data_dir: Path,
    *,
    clock: FakeClock | None = None,
    render=None,
    control=None,
    run_system=None,
    **sections: Any,
):
    config = make_config(data_dir, **sections)
    limiter = RateLimiter(clock=clock) if clock else None
    return create_app(
        config,
        testing=True,
        limiter=limiter,
        render_script=render or FakeRender(),
        control=control,
        run_system=run_system,
    )


def token(client, path: str) -> str:
    response = client.get(path)
    match = CSRF.search(response.get_data(as_text=True))
    assert match, f"no CSRF token on {path} ({response.status_code})"
    return match[1]


def setup_code(data_dir: Path) -> str:
    return (data_dir / "secrets" / "setup-code").read_text().strip()


def set_password(client, data_dir: Path, password: str = PASSWORD):
    return client.post(
        "/setup",
        data={
            "csrf_token": token(client, "/setup"),
            "code": setup_code(data_dir),
            "password": password,
            "confirm": password,
        },
    )


def login(client, password: str = PASSWORD):
    return client.post("/login", data={"csrf_token": token(client, "/login"), "password": password})


def ready_client(app, data_dir: Path):
    """A test client with the password set and logged in."""
    client = app.test_client()
    assert set_password(client, data_dir).status_code == 302
    return client


class FakeBox:
    """A tiny runtime: enough state machine to see the panel change after a press."""

    STEPS = (
        ("welcome", "Welcome"),
        ("breathe", "Step one: grounding breath"),
        ("share", "Sharing round"),
    )

    def __init__(self) -> None:
        self.pressed: list[tuple[str, str]] = []
        self.state = "idle"
        self.index: int | None = None
        self.volume = 0.7
        self.last_input: dict | None = None
        self.lock = threading.Lock()

    def status(self) -> dict:
        with self.lock:
            step = self.STEPS[self.index] if self.index is not None else None
            return {
                "state": self.state,
                "step": step[0] if step else None,
                "step_title": step[1] if step else None,
                "step_index": self.index,
                "steps_total": len(self.STEPS),
                "turn": 2 if step and step[0] == "share" else None,
                "led": {"idle": "breathe", "paused": "blink", "help": "help"}.get(
                    self.state, "solid"
                ),
                "session_elapsed_s": 0 if self.index is None else 65.0 * (self.index + 1),
                "volume": self.volume,
                "last_input": self.last_input,
                "listening": {
                    "level_db": -42.5,
                    "noise_floor_db": -61.0,
                    "in_speech": True,
                    "commands": "off: no model",
                    # the voice check: someone spoke softly a few seconds ago
                    "last_voice_db": 9.4,
                    "last_voice_age_s": 3.0,
                    "clear_voice_db": 15.0,
                },
                "health": {
                    "speaker": "ok",
                    "mic": "ok",
                    "buttons": "ok",
                    "voices": "ok",
                    "vosk": "model missing",
                },
                "faults": [],
            }

    def dispatch(self, action: str, source: str = "admin") -> None:
        with self.lock:
            self.pressed.append((action, source))
            self.last_input = {"source": source, "name": action, "action": action, "at": 0}
            if action in ("start", "next") and self.state in ("idle", "waiting", "speaking"):
                self.index = 0 if self.index is None else min(self.index + 1, len(self.STEPS) - 1)
                self.state = "speaking"
            elif action == "pause":
                self.state = "paused" if self.state != "paused" else "speaking"
            elif action == "help":
                self.state = "help"
            elif action == "volume_up":
                self.volume = min(0.9, round(self.volume + 0.1, 2))


def serve_fake_box(data_dir: Path, box: FakeBox | None = None) -> tuple[FakeBox, ControlServer]:
    box = box or FakeBox()
    server = ControlServer(socket_path(data_dir), box.status, box.dispatch).start()
    return box, server
