"""The admin page's view of the other parts of the box, each behind one small function.

- control: `device.control.ControlClient` on `<data_dir>/run/control.sock`; a box that is off
  (no socket, refused, garbled reply) is `BoxNotRunning`, which the pages say plainly.
- usage: `device.usage` (`UsageStore`, `export_csv`, `dhis2_data_value_set`, `dhis2_csv`).
- rendering: `audio.render` (imports Piper: only ever called from a worker thread or Listen).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class BoxNotRunning(RuntimeError):
    """The device runtime's control socket is absent or does not answer."""


# -- control ------------------------------------------------------------------------------------


class Control:
    """What the pages use: status() and dispatch(), raising BoxNotRunning when the box is off."""

    def __init__(self, socket_path: Path, client: Any = None):
        self.socket_path = Path(socket_path)
        self._client = client

    def client(self) -> Any:
        if self._client is not None:
            return self._client
        from device.control import ControlClient

        return ControlClient(self.socket_path)

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        if self._client is None and not self.socket_path.exists():
            raise BoxNotRunning("the box is not running (its service is stopped)")
        try:
            return fn(self.client())
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ConnectionError is an OSError
            raise BoxNotRunning(f"the box is not running ({exc})") from exc

    def status(self) -> dict[str, Any]:
        return self._call(lambda c: c.status())

    def dispatch(self, action: str) -> dict[str, Any]:
        reply = self._call(lambda c: c.dispatch(action))
        if isinstance(reply, dict) and reply.get("ok") is False:
            raise ValueError(reply.get("error") or "the box refused the action")
        return reply

    def reload(self) -> dict[str, Any]:
        """Tell the running box its settings or circle changed (after each save).

        The reply is {"ok": true, "when": "now" | "after_circle"}, or {"ok": false, "error": ...}
        when the box could not read the saved settings (it keeps its last good ones).
        """
        return self._call(lambda c: c.reload())

    def course_session(self, index: int) -> dict[str, Any]:
        """Choose the meeting of the course the box plays next (between circles only).

        The reply is {"ok": true, "position": n, "label": ...}; a refusal (a circle is running,
        no course, no such meeting) raises ValueError with the box's words.
        """
        reply = self._call(lambda c: c.course_session(index))
        if isinstance(reply, dict) and reply.get("ok") is False:
            raise ValueError(reply.get("error") or "the box refused")
        return reply

    def set_clock(self, epoch: float) -> dict[str, Any]:
        """Set the box's clock to `epoch` (unix seconds, the phone's time).

        The reply is {"ok": true, "time": iso, "trusted": bool} or {"ok": false, "error": ...}.
        """
        return self._call(lambda c: c.set_clock(epoch))


# -- usage --------------------------------------------------------------------------------------


def usage_path(data_dir: Path) -> Path:
    from device.datafolder import DataFolder

    return DataFolder(Path(data_dir)).usage


def usage_sessions(
    data_dir: Path, since: str | None = None, limit: int | None = None
) -> list[dict]:
    path = usage_path(data_dir)
    if not path.exists():
        return []
    from device.usage import UsageStore

    store = UsageStore(path)
    try:
        return list(store.sessions(since=since, limit=limit))
    finally:
        store.close()


def delete_session(data_dir: Path, session_id: str) -> None:
    """Remove one circle's record; KeyError when there is no such record (or no store yet)."""
    path = usage_path(data_dir)
    if not path.exists():
        raise KeyError(session_id)
    from device.usage import UsageStore

    store = UsageStore(path)
    try:
        store.delete(session_id)
    finally:
        store.close()


def export_csv(rows: list[dict]) -> str:
    from device.usage import export_csv as real

    return real(rows)


def dhis2_measures() -> dict[str, str]:
    """Measure key -> what it counts (labels for the settings page)."""
    from device.usage import DHIS2_MEASURES

    labels = {
        "sessions": "circles held",
        "sessions_completed": "circles completed",
        "attendance": "people attending (sum)",
        "core_steps_planned": "core steps planned (sum)",
        "core_steps_delivered": "core steps delivered (sum)",
        "help_presses": "HELP presses (sum)",
        "minutes": "minutes of circles (sum)",
        "course_sessions": "course sessions held (bus stops not counted)",
        "bus_stops": "bus stops held",
        "courses_finished": "courses finished (last session held)",
    }
    return {key: labels.get(key, key.replace("_", " ")) for key in DHIS2_MEASURES}


def dhis2_data_value_set(rows: list[dict], section: Mapping[str, Any]) -> dict:
    from device.usage import dhis2_data_value_set as real

    return real(rows, section)


def dhis2_csv(rows: list[dict], section: Mapping[str, Any]) -> str:
    from device.usage import dhis2_csv as real

    return real(rows, section)


# -- rendering ----------------------------------------------------------------------------------


def render_available() -> bool:
    import importlib.util

    try:
        return (
            importlib.util.find_spec("audio.render") is not None
            and importlib.util.find_spec("piper") is not None
        )
    except (ImportError, ValueError):
        return False
