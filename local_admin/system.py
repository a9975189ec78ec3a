"""System: version, disk, temperature, uptime, health of each part, last update, power."""

from __future__ import annotations

import contextlib
import json
import shutil
from importlib import metadata
from pathlib import Path

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from local_admin import state
from local_admin.i18n import gettext as _
from local_admin.i18n import lazy_gettext as _l
from local_admin.i18n import local_number
from local_admin.panel import get_status, status_view

bp = Blueprint("system", __name__, url_prefix="/system")
COMMANDS = {
    "restart": (
        ["systemctl", "reboot"],
        _l("The box is restarting. This page comes back in about a minute."),
    ),
    "shutdown": (
        ["systemctl", "poweroff"],
        _l("The box is shutting down. Wait for the lights to go out before unplugging it."),
    ),
    "restart-runtime": (
        ["systemctl", "restart", "circlebox.service"],
        _l("The circle service is restarting."),
    ),
}
POWER_WORDS = {  # the buttons, and the yes of their confirmation pages
    "restart-runtime": (_l("Restart the circle service"), _l("Yes, restart runtime")),
    "restart": (_l("Restart the box"), _l("Yes, restart")),
    "shutdown": (_l("Shut down"), _l("Yes, shutdown")),
}


def _version() -> str:
    try:
        return metadata.version("circlebox")
    except metadata.PackageNotFoundError:
        return "unknown"


def _temperature() -> str:
    with contextlib.suppress(OSError, ValueError):
        milli = int(Path("/sys/class/thermal/thermal_zone0/temp").read_text().strip())
        return f"{local_number(milli / 1000, 1)} °C"
    return _("not available")


def _uptime() -> str:
    with contextlib.suppress(OSError, ValueError, IndexError):
        seconds = int(float(Path("/proc/uptime").read_text().split()[0]))
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        return (f"{days} d " if days else "") + f"{hours} h {rest // 60} min"
    return _("not available")


def _disk(path: Path) -> dict:
    usage = shutil.disk_usage(path)
    return {
        "free_gb": usage.free / 1e9,
        "total_gb": usage.total / 1e9,
        "used_pct": round(100 * (usage.total - usage.free) / usage.total) if usage.total else 0,
    }


def _last_update(data_dir: Path) -> dict | None:
    """The updater's last report, if it left one (device.update writes it)."""
    for name in ("update/last-result.json", "update/last.json", "last-update.json"):
        path = data_dir / name
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data
    return None


def _voice_health() -> str:
    try:
        voices, problems = state().voices()
    except Exception as exc:
        return f"cannot list voices: {exc}"
    if not voices:
        return "no voice installed"
    return "ok (" + ", ".join(v.id for v in voices) + ")" + (f"; {problems[0]}" if problems else "")


@bp.route("/")
def system():
    st = state()
    status, problem = get_status()
    # the same reading as the live panel (one function), plus the voices only this process sees
    live = status_view(status, problem, extra_health={"voices": _voice_health()})
    info = {
        "version": _version(),
        "temperature": _temperature(),
        "uptime": _uptime(),
        "disk": _disk(st.data_dir),
        "box": st.config.box.name,
        "site": st.config.box.site,
        "data_dir": str(st.data_dir),
    }
    return render_template(
        "system.html",
        info=info,
        s=live,
        update=_last_update(st.data_dir),
        commands=COMMANDS,
        power_words={what: words[0] for what, words in POWER_WORDS.items()},
    )


@bp.route("/update", methods=["POST"])
def upload_bundle():
    """A .cbx from the technician's phone or laptop, streamed into the inbox (see
    local_admin.bundle_upload); the box's updater does the rest. Exempt from CSRFProtect,
    which would read the whole form first: the token is checked in the stream instead."""
    from device.update.inbox import UploadRefused
    from local_admin.bundle_upload import take_form, take_raw

    data_dir = state().data_dir
    try:
        if request.mimetype == "application/octet-stream":
            token = request.headers.get("X-CSRFToken")
            take_raw(request.stream, request.content_length, token, data_dir)
        elif request.mimetype == "multipart/form-data" and request.mimetype_params.get("boundary"):
            take_form(request.stream, request.mimetype_params["boundary"], data_dir)
        else:
            raise UploadRefused(_("send the update file with the Upload button on this page"))
    except UploadRefused as exc:
        return _upload_answer(False, _("Not accepted: %(why)s.", why=exc))
    except OSError as exc:
        return _upload_answer(False, _("Not accepted: the box could not store the file (%(why)s).", why=exc))
    return _upload_answer(
        True,
        _("Uploaded. The box is checking the update now and says what it is doing; "
          "the result appears here under Last update."),
    )


def _upload_answer(ok: bool, message: str):
    """JSON for the page's script; a flash and the System page otherwise."""
    if request.accept_mimetypes.best == "application/json":
        return jsonify(ok=ok, message=message), (200 if ok else 400)
    flash(message, "ok" if ok else "error")
    return redirect(url_for("system.system"))


@bp.route("/power", methods=["POST"])
def power():
    what = request.form.get("what", "")
    if what not in COMMANDS:
        flash(_("Unknown command."), "error")
        return redirect(url_for("system.system"))
    if request.form.get("confirm") != "yes":
        return render_template(
            "confirm.html",
            text=str(COMMANDS[what][1]),
            note=_("If a circle is running now, it stops."),
            action_url=url_for("system.power"),
            fields={"what": what},
            yes_label=str(POWER_WORDS[what][1]),
            back_url=url_for("system.system"),
        )
    ok, output = state().run_system(COMMANDS[what][0])
    if ok:
        flash(str(COMMANDS[what][1]), "ok")
    else:
        flash(_("The box refused: %(why)s", why=output or _("no permission")), "error")
    return redirect(url_for("system.system"))
