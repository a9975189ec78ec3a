"""The live panel: what the box is doing now, and on-screen buttons for the named actions."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from device.actions import ACTIONS, UnknownAction, parse_action
from local_admin import state
from local_admin.backends import BoxNotRunning

bp = Blueprint("panel", __name__, url_prefix="/panel")

# The big buttons shown on the panel, in the order a facilitator thinks of them.
PANEL_BUTTONS = (
    "next",
    "repeat",
    "pause",
    "help",
    "previous",
    "skip",
    "volume_down",
    "volume_up",
    "start",
    "stop",
)
LABELS = {
    "next": "Next",
    "repeat": "Repeat",
    "pause": "Pause",
    "help": "Help",
    "previous": "Back",
    "skip": "Skip step",
    "volume_down": "Softer",
    "volume_up": "Louder",
    "start": "Start",
    "stop": "Stop",
    "explain": "Explain",
}
STATE_WORDS = {
    "idle": "Ready, not started",
    "speaking": "Speaking",
    "waiting": "Waiting for NEXT",
    "in_round": "In a round",
    "timer": "Timer running",
    "paused": "Paused",
    "help": "HELP pressed",
    "finished": "Circle finished",
}


def get_status() -> tuple[dict | None, str | None]:
    try:
        status = state().control.status()
    except BoxNotRunning as exc:
        return None, str(exc)
    if not isinstance(status, dict):
        return None, "the box gave an answer the page does not understand"
    return status, None


def format_elapsed(seconds) -> str:
    try:
        total = int(float(seconds or 0))
    except (TypeError, ValueError):
        return "-"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_view(status: dict | None, problem: str | None) -> dict:
    """The status as the page shows it (also what status.json returns)."""
    if status is None:
        return {"running": False, "message": problem or "the box is not running"}
    listening = status.get("listening") or {}
    last = status.get("last_input") or {}
    return {
        "running": True,
        "state": status.get("state"),
        "state_text": STATE_WORDS.get(status.get("state"), str(status.get("state"))),
        "step": status.get("step"),
        "step_title": status.get("step_title") or status.get("step") or "-",
        "step_index": status.get("step_index"),
        "steps_total": status.get("steps_total"),
        "step_text": (
            f"{int(status['step_index']) + 1} of {status['steps_total']}"
            if isinstance(status.get("step_index"), int) and status.get("steps_total")
            else "-"
        ),
        "turn": status.get("turn"),
        "led": status.get("led") or "-",
        "elapsed": format_elapsed(status.get("session_elapsed_s")),
        "volume": status.get("volume"),
        "volume_pct": (
            round(float(status["volume"]) * 100)
            if isinstance(status.get("volume"), int | float)
            else None
        ),
        "last_input": last,
        "last_input_text": (
            f"{last.get('source', '?')} {last.get('name', '')} -> {last.get('action', '')}"
            if last
            else "nothing yet"
        ),
        "level_db": listening.get("level_db"),
        "noise_floor_db": listening.get("noise_floor_db"),
        "in_speech": bool(listening.get("in_speech")),
        "commands": listening.get("commands"),
        "health": status.get("health") or {},
        "faults": list(status.get("faults") or []),
    }


def _active_steps() -> list[tuple[str, str]]:
    """(id, title) of the steps of the circle the box runs, for the "go to step" buttons."""
    from local_admin import store

    st = state()
    path = store.find_path(st.data_dir, st.config.session.script)
    if path is None:
        return []
    try:
        raw = store.raw_dict(path.read_text(encoding="utf-8"))
    except OSError:
        return []
    steps = raw.get("steps") if isinstance(raw.get("steps"), list) else []
    return [(str(s["id"]), str(s.get("title") or s["id"])) for s in steps
            if isinstance(s, dict) and "id" in s]


@bp.route("/")
def panel():
    status, problem = get_status()
    return render_template(
        "panel.html",
        steps=_active_steps(),
        s=status_view(status, problem),
        buttons=[(a, LABELS.get(a, a), ACTIONS[a]) for a in PANEL_BUTTONS],
    )


@bp.route("/status.json")
def status_json():
    status, problem = get_status()
    return jsonify(status_view(status, problem))


@bp.route("/press", methods=["POST"])
def press():
    action = (
        (request.get_json(silent=True) or {}).get("action")
        if request.is_json
        else request.form.get("action", "")
    )
    try:
        parse_action(str(action or ""))
    except UnknownAction as exc:
        if request.is_json:
            return jsonify(error=str(exc)), 400
        flash(str(exc), "error")
        return redirect(url_for("panel.panel")), 303
    try:
        reply = state().control.dispatch(str(action))
    except BoxNotRunning as exc:
        if request.is_json:
            return jsonify(error=str(exc)), 503
        flash(str(exc).capitalize() + ".", "error")
        return redirect(url_for("panel.panel")), 303
    except ValueError as exc:  # the box refused it (e.g. a goto to a step it does not have)
        if request.is_json:
            return jsonify(error=str(exc)), 400
        flash(str(exc), "error")
        return redirect(url_for("panel.panel")), 303
    if request.is_json:
        status, problem = get_status()
        return jsonify(reply=reply, status=status_view(status, problem))
    back = request.form.get("back", "")
    if back == "settings":
        return redirect(url_for("settings.settings") + "#buttons"), 303
    return redirect(url_for("panel.panel")), 303
