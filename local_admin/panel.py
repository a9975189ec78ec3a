"""The live panel: what the box is doing now, and on-screen buttons for the named actions."""

from __future__ import annotations

import math

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from device.actions import ACTIONS, UnknownAction, parse_action
from device.faults import PART_NAMES, explain, explain_fault, is_ok
from local_admin import state
from local_admin.backends import BoxNotRunning
from local_admin.i18n import gettext as _
from local_admin.i18n import lazy_gettext as _l
from local_admin.i18n import plain_fault, translated

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
    "next": _l("Next"),
    "repeat": _l("Repeat"),
    "pause": _l("Pause"),
    "help": _l("Help"),
    "previous": _l("Back"),
    "skip": _l("Skip step"),
    "volume_down": _l("Softer"),
    "volume_up": _l("Louder"),
    "start": _l("Start"),
    "stop": _l("Stop"),
    "explain": _l("Explain"),
    "rehearse": _l("Rehearse this circle"),
}
REHEARSAL_NOTE = _l("A rehearsal is practice for the facilitator: it is never counted as a circle held, "
                    "and the course does not move on.")
STATE_WORDS = {
    "idle": _l("Ready, not started"),
    "speaking": _l("Speaking"),
    "waiting": _l("Waiting for NEXT"),
    "in_round": _l("In a round"),
    "timer": _l("Timer running"),
    "paused": _l("Paused"),
    "help": _l("HELP pressed"),
    "finished": _l("Circle finished"),
}

# The lights' patterns (device.engine.LED_FOR_STATE) in words; in English the pattern's own name.
LED_WORDS = {
    "idle": _l("idle"),
    "speaking": _l("speaking"),
    "waiting": _l("waiting"),
    "listening": _l("listening"),
    "timer": _l("timer"),
    "paused": _l("paused"),
    "help": _l("help"),
    "turn_warn": _l("time nearly up"),  # a turn the facilitator ends (or without listening)
    "turn_over": _l("time is up"),
    "update": _l("updating"),
    "fault": _l("fault"),
}

# The parts whose health the panel and /system/ list, in this order.
HEALTH_PARTS = ("speaker", "mic", "buttons", "voices", "vosk")
STOP_QUESTION = _l("End the circle now? It will be saved as ended early.")
CLOCK_DRIFT_S = 120  # the phone and the box disagree by more than this: offer to set the clock


def get_status() -> tuple[dict | None, str | None]:
    try:
        status = state().control.status()
    except BoxNotRunning as exc:
        return None, str(exc)
    if not isinstance(status, dict):
        return None, _("the box gave an answer the page does not understand")
    return status, None


def format_elapsed(seconds) -> str:
    try:
        total = int(float(seconds or 0))
    except (TypeError, ValueError):
        return "-"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _minutes_seconds(seconds: float) -> str:
    total = max(0, round(seconds))
    return f"{total // 60}:{total % 60:02d}"


def countdown_view(countdown: dict | None) -> dict | None:
    """The runtime's turn/timer countdown as the panel shows it; None when nothing counts down."""
    if not isinstance(countdown, dict):
        return None
    try:
        limit = float(countdown["limit_s"])
        remaining = float(countdown.get("remaining_s", limit - float(countdown.get("elapsed_s", 0))))
    except (KeyError, TypeError, ValueError):
        return None
    kind = countdown.get("kind")
    turn = countdown.get("turn")
    label = _("Turn %(turn)s", turn=turn) if kind == "turn" and turn is not None else (
        _("This turn") if kind == "turn" else _("Timer"))
    over = remaining <= 0
    return {
        "kind": kind,
        "label": label,
        "remaining": _minutes_seconds(remaining),
        "limit": _minutes_seconds(limit),
        "text": (_("time is up (%(limit)s)", limit=_minutes_seconds(limit)) if over
                 else _("%(left)s left of %(limit)s", left=_minutes_seconds(remaining),
                        limit=_minutes_seconds(limit))),
        "rest": _("time is up") if over else _("left of %(limit)s", limit=_minutes_seconds(limit)),
        "pct": (round(100 * min(1.0, max(0.0, 1 - remaining / limit))) if limit > 0 else 100),
        "over": over,
        # the box did not hear this voice clearly, or the room is too noisy to tell a silent
        # turn from a voice under the noise: it leaves the turn's end to the facilitator
        "note": _left_to_facilitator_note(countdown) if kind == "turn" else "",
    }


def _left_to_facilitator_note(countdown: dict) -> str:
    if not countdown.get("left_to_facilitator"):
        return ""
    if countdown.get("room_too_noisy"):
        return _("The room is too noisy for the box to tell whether someone is speaking softly, "
                 "so it will not end this turn by itself: press NEXT when the person has "
                 "finished or passes.")
    return _("The box did not hear this voice clearly, so it will not end this turn by itself: "
             "press NEXT when the person has finished.")


def clock_view(clock: dict | None) -> dict | None:
    """The box's wall clock as the runtime reads it: the page offers to set it from the phone
    when it is not trusted or is more than CLOCK_DRIFT_S away from the phone's own time."""
    if not isinstance(clock, dict) or not clock.get("time"):
        return None
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(str(clock["time"]))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return {
        "epoch": when.timestamp(),
        "text": when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "trusted": bool(clock.get("trusted")),
    }


def _listening_off(part: str, commands: str) -> dict | None:
    """The microphone or spoken commands when the box reports no health for them because it
    does not listen (the runtime's `listening.commands` says "off: <why>"); else None."""
    listening_off = "not enabled" in commands or "not started" in commands
    if part == "mic" and not listening_off:
        return None
    if part == "vosk" and not commands.startswith("off"):
        return None
    why = commands[4:].strip() if commands.startswith("off") else commands
    return {
        "part": part, "label": translated(PART_NAMES[part]), "state": "off",
        "text": (_("Not in use: the box does not listen to the room.") if part == "mic"
                 else _("Off: the box does not listen for spoken commands.")),
        "advice": (_("Listening can be turned on in Settings (Listening).") if listening_off
                   else translated(explain(part, why).advice)),
        "detail": why,
    }


def parts_view(status: dict | None, extra_health: dict | None = None) -> list[dict]:
    """Each part's health in plain words: the one reading the panel and /system/ both show.

    `extra_health` adds what only the admin process knows (its list of voices). A part the
    running box does not report is said to be not in use or not reported, never "not running".
    """
    running = status is not None
    health = {**((status or {}).get("health") or {}), **(extra_health or {})}
    commands = str(((status or {}).get("listening") or {}).get("commands") or "")
    out = []
    for part in HEALTH_PARTS:
        value = health.get(part)
        label = translated(PART_NAMES[part])
        if value is None and running and part in ("mic", "vosk"):
            if part == "vosk" and commands.startswith("on"):
                value = "ok"
            elif (off := _listening_off(part, commands)) is not None:
                out.append(off)
                continue
        if value is None:
            out.append({"part": part, "label": label, "state": "unknown",
                        "text": (_("Not reported by the box.") if running
                                 else _("Not known: the box is not running.")),
                        "advice": "", "detail": ""})
        elif is_ok(value):
            out.append({"part": part, "label": label, "state": "ok", "text": _("Working."),
                        "advice": "", "detail": str(value)[2:].strip(" ()")})
        else:
            plain = plain_fault(explain(part, str(value)))
            out.append({"part": part, "label": label, "state": "bad", "text": plain["summary"],
                        "advice": plain["advice"], "detail": plain["detail"]})
    return out


def last_input_words(last: dict | None) -> str:
    """The last press in a facilitator's words: "Next, on the box's next button"."""
    if not last:
        return _("nothing yet")
    action = str(last.get("action", ""))
    if action in LABELS:
        what = str(LABELS[action])
    elif action.startswith("goto:"):
        what = _("Go to step %(step)s", step=action.removeprefix("goto:"))
    elif action.startswith("volume:"):
        what = _("Volume %(level)s", level=action.removeprefix("volume:"))
    else:
        what = action
    source = str(last.get("source", ""))
    if source.startswith("button:"):
        where = _("the box's %(button)s button", button=source.split(":", 1)[1])
    else:
        where = {"admin": _("this page"), "keyboard": _("the keyboard"), "voice": _("a spoken command"),
                 "buttons:chord": _("two buttons held together")}.get(source, source or "?")
    return _("%(what)s, from %(where)s", what=what, where=where)


def status_view(status: dict | None, problem: str | None, extra_health: dict | None = None) -> dict:
    """The status as the page shows it (also what status.json returns, and /system/ reads)."""
    if status is None:
        return {"running": False, "message": problem or _("the box is not running"),
                "parts": parts_view(None, extra_health), "problems": [], "countdown": None,
                "clock": None}
    listening = status.get("listening") or {}
    last = status.get("last_input") or {}
    cap = status.get("volume_cap")
    if not isinstance(cap, int | float):
        cap = state().config.audio.volume_cap
    faults = [str(f) for f in status.get("faults") or []]
    return {
        "running": True,
        "state": status.get("state"),
        "state_text": str(STATE_WORDS.get(status.get("state"), str(status.get("state")))),
        "step": status.get("step"),
        "step_title": status.get("step_title") or status.get("step") or "-",
        "step_index": status.get("step_index"),
        "steps_total": status.get("steps_total"),
        "step_text": (
            _("%(n)s of %(total)s", n=int(status["step_index"]) + 1, total=status["steps_total"])
            if isinstance(status.get("step_index"), int) and status.get("steps_total")
            else "-"
        ),
        "turn": status.get("turn"),
        "led": str(LED_WORDS.get(status.get("led"), status.get("led") or "-")),
        "elapsed": format_elapsed(status.get("session_elapsed_s")),
        "volume": status.get("volume"),
        "volume_pct": (
            round(float(status["volume"]) * 100)
            if isinstance(status.get("volume"), int | float)
            else None
        ),
        "volume_cap_pct": round(float(cap) * 100),
        "countdown": countdown_view(status.get("countdown")),
        "clock": clock_view(status.get("clock")),
        "last_input": last,
        "last_input_text": last_input_words(last),
        "level_db": listening.get("level_db"),
        "noise_floor_db": listening.get("noise_floor_db"),
        "in_speech": bool(listening.get("in_speech")),
        "too_noisy": bool(listening.get("too_noisy")),
        "noise_note": noise_note(listening),
        "voice_note": voice_note(listening),
        "commands": listening.get("commands"),
        "health": status.get("health") or {},
        "parts": parts_view(status, extra_health),
        "faults": faults,
        "problems": [plain_fault(explain_fault(f)) for f in faults],
        "course": course_view(status.get("course")),
        "course_label": (course_view(status.get("course")) or {}).get("label"),
    }


def noise_note(listening: dict) -> str:
    """The sentence next to the level meter, in the reader's language: how the room's steady
    noise stands for hearing the circle (the listener's `room_noise`), and what to do."""
    floor = listening.get("noise_floor_db")
    background = f"{float(floor):.0f}" if isinstance(floor, int | float) else "-"
    room = listening.get("room_noise") or ("too_noisy" if listening.get("too_noisy") else "")
    if room == "too_noisy":
        limit = listening.get("too_noisy_db")
        return _("The room is too noisy to be sure when someone has finished (background "
                 "%(background)s dB, above %(limit)s dB): the box waits longer before it ends a "
                 "turn, and leaves most turns for the facilitator to end with NEXT. Move the box "
                 "closer to the group or away from the fan, road or generator.",
                 background=background,
                 limit=f"{float(limit):.0f}" if isinstance(limit, int | float) else "-")
    if room == "loud":
        return _("The room is loud (background %(background)s dB): the box may not hear a soft "
                 "voice clearly, and then leaves that turn for the facilitator to end with NEXT. "
                 "Move the box closer to the group or away from the noise.",
                 background=background)
    return ""


# The voice check is for placing the box: someone speaks, the page says how well the box heard
# her. A number about a voice that spoke minutes ago says nothing about the room now.
VOICE_NOTE_FOR_S = 120.0


def voice_note(listening: dict) -> str:
    """The voice check next to the level meter, in the reader's language: how far the last
    voice stood out of the room (the listener's `last_voice_db`), against the level the box
    hears well (`clear_voice_db`); nothing once that voice is VOICE_NOTE_FOR_S old. How long
    ago is said too: a voice too soft to measure leaves the one before it on the meter, and the
    person who just spoke must not take that one for hers."""
    voice, age = listening.get("last_voice_db"), listening.get("last_voice_age_s")
    clear = listening.get("clear_voice_db")
    if not all(isinstance(x, int | float) for x in (voice, age, clear)) or age > VOICE_NOTE_FOR_S:
        return ""
    # whole dB, rounded down: 14.6 must not read "only 15 dB (15 dB or more is safe)"
    shown, ago = f"{math.floor(voice):d}", f"{float(age):.0f}"
    if voice >= clear:
        return _("The last voice the box heard (%(ago)s s ago) stood %(voice)s dB above the "
                 "room's noise: the box hears a voice like that well.", ago=ago, voice=shown)
    return _("The last voice the box heard (%(ago)s s ago) stood only %(voice)s dB above the "
             "room's noise (%(clear)s dB or more is clear): the box is not sure when a voice "
             "like that has finished, so it leaves that person's turn for the facilitator to end "
             "with NEXT. Move the box nearer to that seat or away from the noise, and the box "
             "can pace it again.",
             ago=ago, voice=shown, clear=f"{float(clear):.0f}")


def course_view(block: dict | None) -> dict | None:
    """The runtime's "course" status block as the panel shows it: where the course stands in
    the reader's words ("Session 3 of 16: <circle title>"), and the meetings to choose from."""
    if not isinstance(block, dict):
        return None
    from local_admin import course_store, store

    plan = course_store.plan_from_status(block)
    titles: dict[str, str] = {}

    def title(circle: str) -> str:
        if circle not in titles:
            steps_source = store.resolve(state().data_dir, circle)
            titles[circle] = (steps_source.loaded.script.title or circle) if steps_source else circle
        return titles[circle]

    position = block.get("position") if isinstance(block.get("position"), int) else 0
    finished = bool(block.get("finished"))
    total = sum(1 for m in plan if not m.bus_stop)
    now = next((m for m in plan if m.index == position), None)
    if finished or now is None:
        label = _("Course finished: all %(total)s sessions held", total=total)
    else:
        label = _("%(meeting)s: %(circle)s", meeting=now.label, circle=title(now.circle))
    return {
        "id": str(block.get("id", "")),
        "title": str(block.get("title") or block.get("id") or ""),
        "label": label,
        "position": position,
        "finished": finished,
        "choices": [{"index": m.index, "text": _("%(meeting)s: %(circle)s", meeting=m.label, circle=title(m.circle))
                     + (" " + _("(held)") if m.held else ""), "now": m.index == position and not finished}
                    for m in plan],
    }


def _active_steps(status: dict | None) -> list[tuple[str, str]]:
    """(id, title) of the steps of the circle the box runs, for the "go to step" buttons: the
    one it is playing now when it runs (a newly chosen circle waits for the circle to end)."""
    from local_admin import store

    st = state()
    playing = status.get("script") if status else None
    name = playing if isinstance(playing, str) and store.valid_id(playing) else st.config.session.script
    return store.active_steps(st.data_dir, name)


@bp.route("/")
def panel():
    status, problem = get_status()
    return render_template(
        "panel.html",
        steps=_active_steps(status),
        s=status_view(status, problem),
        buttons=[(a, LABELS.get(a, a), translated(ACTIONS[a])) for a in PANEL_BUTTONS],
        stop_question=STOP_QUESTION,
        clock_drift_s=CLOCK_DRIFT_S,
        rehearse_label=LABELS["rehearse"],
        rehearsal_note=REHEARSAL_NOTE,
    )


@bp.route("/status.json")
def status_json():
    status, problem = get_status()
    return jsonify(status_view(status, problem))


def _refused(message: str, code: int):
    """A refusal: JSON for the page's script, a message at the top of the panel without it."""
    if request.is_json:
        return jsonify(error=message), code
    flash(message, "error")
    return redirect(url_for("panel.panel")), 303


def _send(action: str):
    """Dispatch one action to the box and answer as the caller expects (JSON or a redirect)."""
    try:
        parse_action(action)
    except UnknownAction as exc:
        return _refused(str(exc), 400)
    try:
        reply = state().control.dispatch(action)
    except BoxNotRunning as exc:
        return _refused(str(exc).capitalize() + ".", 503)
    except ValueError as exc:  # the box refused it (e.g. a goto to a step it does not have)
        return _refused(str(exc), 400)
    if request.is_json:
        status, problem = get_status()
        return jsonify(reply=reply, status=status_view(status, problem))
    if request.form.get("back", "") == "settings":
        return redirect(url_for("settings.settings") + "#buttons"), 303
    return redirect(url_for("panel.panel")), 303


@bp.route("/press", methods=["POST"])
def press():
    """An on-screen button. Stop ends the circle, so it asks first: the page's script asks in
    the page (and sends confirm: true); without JavaScript a confirmation page asks."""
    body = request.get_json(silent=True) if request.is_json else {}
    if not isinstance(body, dict):  # an array, a number, text or broken JSON
        return jsonify(error=_('Send the press as a JSON object, like {"action": "next"}.')), 400
    raw = body.get("action") if request.is_json else request.form.get("action")
    if raw is not None and not isinstance(raw, str):
        return jsonify(error=_('The action must be text, like {"action": "next"}.')), 400
    action = raw or ""
    confirmed = body.get("confirm") is True if request.is_json else request.form.get("confirm") == "yes"
    if action.strip() == "stop" and not confirmed:
        if request.is_json:
            return jsonify(error=_("confirm first"), confirm=str(STOP_QUESTION)), 409
        return render_template(
            "confirm.html",
            title=_("Stop the circle?"),
            text=STOP_QUESTION,
            note="",
            action_url=url_for("panel.press"),
            fields={"action": "stop"},
            yes_label=_("Yes, end the circle"),
            back_url=url_for("panel.panel"),
        )
    return _send(action)


@bp.route("/course-session", methods=["POST"])
def course_session():
    """Choose which meeting of the course the box plays next (the runtime's `course_session`
    control command; it refuses while a circle runs, and the panel says why in plain words)."""
    raw = request.form.get("index", "").strip()
    if not raw.isdigit():
        return _refused(_("Choose a session from the list."), 400)
    try:
        reply = state().control.course_session(int(raw))
    except BoxNotRunning as exc:
        return _refused(str(exc).capitalize() + ".", 503)
    except ValueError as exc:  # the box refused: mid-circle, no course, no such meeting
        return _refused(_("The box did not change the session: %(why)s.", why=translated(str(exc))), 409)
    status, problem = get_status()
    view = status_view(status, problem).get("course") or {}
    flash(_("Next on the box: %(what)s.", what=view.get("label") or reply.get("label", "")), "ok")
    return redirect(url_for("panel.panel")), 303


@bp.route("/volume", methods=["POST"])
def volume():
    """The volume slider without JavaScript (with it, the slider sends volume:<percent> to
    /panel/press at once). The box caps it at its loudest setting."""
    raw = request.form.get("percent", "").strip()
    if not raw.isdigit() or not 0 <= int(raw) <= 100:
        return _refused(_("Volume: choose a level from 0 to 100 percent, not '%(value)s'.", value=raw[:10]), 400)
    return _send(f"volume:{int(raw)}")


@bp.route("/clock", methods=["POST"])
def set_clock():
    """Set the box's clock to the phone's time (boxes have no clock battery; usage dates
    depend on it). The page's script sends {"epoch_ms": Date.now()}; the runtime sets it."""
    body = request.get_json(silent=True) if request.is_json else None
    raw = (body or {}).get("epoch_ms") if isinstance(body, dict) else None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return jsonify(error=_("send the phone's time as epoch_ms (milliseconds)")), 400
    try:
        reply = state().control.set_clock(float(raw) / 1000.0)
    except BoxNotRunning as exc:
        return jsonify(error=str(exc).capitalize() + "."), 503
    if not isinstance(reply, dict) or reply.get("ok") is False:
        why = reply.get("error") if isinstance(reply, dict) else None
        return jsonify(error=_("The box did not take this time: %(why)s.", why=why or _("no answer"))), 400
    status, problem = get_status()
    return jsonify(reply=reply, status=status_view(status, problem))
