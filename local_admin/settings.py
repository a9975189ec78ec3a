"""Box settings: name and site, volume and its cap, buttons, listening, admin access, DHIS2 codes.

Everything is saved to the admin layer `<data_dir>/admin-config.yaml` (atomically) after
`device.config.validate_admin_layer` has checked the whole config it makes, with the same
section models the box loads (`device.config_sections`): the rules live there, this page only
turns form text into values and puts each message next to its field. A refused save changes
nothing on disk. After a save the page tells the runtime and says when the box will use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml
from flask import Blueprint, flash, redirect, render_template, request, url_for

from device.actions import ACTIONS, UnknownAction, validate_action_name
from device.config import (
    Config,
    ConfigError,
    merge,
    validate_admin_layer,
)
from device.config import (
    read_layer as read_layer_file,
)
from device.config_sections import DEFAULT_PHRASES, DETECTORS, WEBRTC_ONLY, language_of
from device.datafolder import DataFolder
from device.fsutil import atomic_write_text
from local_admin import state
from local_admin.applies import Change, tell_box
from local_admin.backends import dhis2_measures
from local_admin.i18n import gettext as _
from local_admin.i18n import language_choices, translated
from local_admin.i18n import lazy_gettext as _l

bp = Blueprint("settings", __name__, url_prefix="/settings")

LISTEN_NUMBERS = {  # form field -> (label, help); the limits are the model's
    "noise_margin_db": (
        _l("Speech must be louder than the room by (dB)"),
        _l("higher: fewer false starts"),
    ),
    "speech_start_s": (_l("Speech starts after (s)"), _l("how long someone must talk to count")),
    "speech_end_hangover_s": (_l("Speech ends after quiet of (s)"), ""),
    "min_speech_db": (_l("Quietest speech (dBFS)"), _l("below this is silence")),
}
# The speech detectors, in the words of someone choosing one (`listening.detector`).
DETECTOR_CHOICES = {
    "silero": _l("Silero (recommended): hears voices in noise"),
    "webrtc": _l("WebRTC: lighter, but takes a fan or talk next door for a voice"),
}
DHIS2_CODES = ("org_unit", "category_option_combo", "data_set")  # the code fields on the form


def admin_layer_path():
    return DataFolder(state().data_dir).admin_config


def read_layer() -> dict[str, Any]:
    return read_layer_file(admin_layer_path())


def save_layer(updates: dict[str, Any]) -> Config:
    """Put `updates` into the admin layer, check the config it makes, write it atomically.

    Maps of the user's own keys in `updates` (DHIS2 data elements, spoken phrases) replace the
    saved ones whole. Raises ConfigError (with `.problems`) and writes nothing when refused.
    """
    st = state()
    with st.config_lock:
        layer = merge(read_layer(), updates, "admin page", new_keys=True)
        new_config = validate_admin_layer(st.config, layer, "admin page")
        text = "# Written by the Circlebox admin page. Edit with care: unknown keys are errors.\n"
        text += yaml.safe_dump(layer, sort_keys=False, allow_unicode=True)
        atomic_write_text(admin_layer_path(), text)
        st.config = new_config
    return new_config


def _is_protected(dotted: str) -> bool:
    protected = state().config.protected
    return any(
        dotted == p or dotted.startswith(p + ".") or p.startswith(dotted + ".") for p in protected
    )


def _form_values() -> dict[str, Any]:
    c = state().config
    listening, dhis2 = c.listening, c.dhis2
    values: dict[str, Any] = {
        "box_name": c.box.name,
        "box_site": c.box.site,
        "volume": round(c.audio.volume * 100),
        "volume_cap": round(c.audio.volume_cap * 100),
        "listen_enabled": listening.enabled,
        "vad_aggressiveness": listening.vad_aggressiveness,
        "detector": listening.detector,
        "commands_enabled": listening.commands.enabled,
        "commands_language": listening.commands.language,
        "phrases": "\n".join(f"{p} = {a}" for p, a in listening.commands.phrases.items()),
        "allowed_hosts": ", ".join(c.admin.allowed_hosts),
        "page_language": c.admin.language,
        "period_type": dhis2.period_type,
        "min_circle_minutes": f"{dhis2.min_circle_minutes:g}",
    }
    for key in DHIS2_CODES:
        values[key] = getattr(dhis2, key) or ""
    for key in LISTEN_NUMBERS:
        values[f"listen_{key}"] = f"{getattr(listening, key):g}"
    for key in dhis2_measures():
        values[f"de_{key}"] = dhis2.data_elements.get(key, "")
    values["courses"] = "\n".join(f"{course} = {code}" for course, code in dhis2.courses.items())
    for i, button in enumerate(c.buttons.map):
        values[f"btn{i}_press"] = button.press
        values[f"btn{i}_hold"] = button.hold or ""
    return values


def _render(values: dict, errors: dict, status: int = 200):
    c = state().config
    steps: list[str] = []
    try:
        from local_admin import store

        path = store.find_path(state().data_dir, c.session.script)
        raw = store.raw_dict(path.read_text(encoding="utf-8")) if path else {}
        steps = [str(s["id"]) for s in raw.get("steps") or [] if isinstance(s, dict) and "id" in s]
    except (OSError, TypeError, AttributeError):
        steps = []
    actions = [*ACTIONS, *(f"goto:{s}" for s in steps)]
    return render_template(
        "settings.html",
        v=values,
        errors=errors,
        buttons=c.buttons.map,
        actions=actions,
        listen_numbers=LISTEN_NUMBERS,
        webrtc_only=WEBRTC_ONLY,
        detector_choices=DETECTOR_CHOICES,
        dhis2_elements={key: translated(label) for key, label in dhis2_measures().items()},
        page_languages=language_choices(),
        protected=_is_protected,
    ), status


@bp.route("/", methods=["GET"])
def settings():
    return _render(_form_values(), {})


def _num(errors: dict, field: str, text: str, lo: float, hi: float, label: str) -> float | None:
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        errors[field] = _("%(what)s: enter a number", what=label)
        return None
    if not lo <= value <= hi:
        errors[field] = _("%(what)s: must be between %(low)s and %(high)s", what=label, low=f"{lo:g}", high=f"{hi:g}")
        return None
    return int(value) if value.is_integer() else value


def _number(errors: dict, field: str, text: str) -> float | None:
    """Form text as a number; its limits are checked by the config model."""
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        errors[field] = _("enter a number, like 0.5")
        return None


def _pair_lines(text: str, errors: dict, field: str, hint: Callable[[int], str], *,
                split_at_last: bool) -> dict[str, str] | None:
    """`left = right` lines as a mapping, empty lines skipped. At the first line without "=",
    `hint(its number)` goes to `errors[field]` and the answer is None."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "=" not in line:
            errors[field] = hint(number)
            return None
        left, right = line.rsplit("=", 1) if split_at_last else line.split("=", 1)
        pairs[left.strip()] = right.strip()
    return pairs


def _phrase_lines(text: str, errors: dict) -> dict[str, str] | None:
    """`phrase = action` lines as a mapping; the model checks the phrases and actions.

    An empty box means the built-in phrases of the language (None).
    """
    def hint(number: int) -> str:
        return _("line %(number)s: write it as: phrase = action (like: next step = next)", number=number)

    return _pair_lines(text, errors, "phrases", hint, split_at_last=True) or None


def _course_lines(text: str, errors: dict) -> dict[str, str]:
    """`course = code` lines as a mapping; the Dhis2Section model checks the ids and codes."""
    def hint(number: int) -> str:
        return _("line %(number)s: write it as: course = code (like: support-group = AbCdEfGhIj1)", number=number)

    return _pair_lines(text, errors, "courses", hint, split_at_last=False) or {}


def _box_updates(f, errors: dict) -> dict[str, Any]:
    updates: dict[str, Any] = {}
    name = f.get("box_name", "").strip()
    if not name:
        errors["box_name"] = _("give the box a name, like clinic-north")
    elif len(name) > 64:
        errors["box_name"] = _("keep the name under 64 characters")
    site = f.get("box_site", "").strip()
    if len(site) > 120:
        errors["box_site"] = _("keep the site under 120 characters")
    updates["box"] = {"name": name, "site": site}
    audio: dict[str, Any] = {}
    cap = (
        None
        if _is_protected("audio.volume_cap")
        else _num(errors, "volume_cap", f.get("volume_cap", ""), 10, 100, _("Loudest allowed"))
    )
    vol = (
        None
        if _is_protected("audio.volume")
        else _num(errors, "volume", f.get("volume", ""), 0, 100, _("Volume"))
    )
    if cap is not None:
        audio["volume_cap"] = round(cap / 100, 3)
    if vol is not None:
        limit = cap if cap is not None else state().config.audio.volume_cap * 100
        if vol > limit:
            errors["volume"] = _("Volume: must not be above the loudest allowed (%(limit)s%%)", limit=f"{limit:g}")
        audio["volume"] = round(vol / 100, 3)
    if audio:
        updates["audio"] = audio
    return updates


def _button_updates(f, errors: dict) -> dict[str, Any]:
    if _is_protected("buttons"):
        errors["buttons"] = _("the button map is locked in this box's main config")
        return {}
    mapping = []
    for i, button in enumerate(state().config.buttons.map):
        spec = button.model_dump(mode="json")
        for kind in ("press", "hold"):
            action = f.get(f"btn{i}_{kind}", "").strip()
            if kind == "hold" and not action:
                spec["hold"] = None
                continue
            try:
                validate_action_name(action)
            except UnknownAction as exc:
                errors[f"btn{i}_{kind}"] = str(exc)
            spec[kind] = action
        mapping.append(spec)
    return {"buttons": {"map": mapping}}


def _listening_updates(f, errors: dict) -> dict[str, Any]:
    listening: dict[str, Any] = {"enabled": f.get("listen_enabled") == "on"}
    for key in LISTEN_NUMBERS:
        value = _number(errors, f"listen_{key}", f.get(f"listen_{key}", ""))
        if value is not None:
            listening[key] = value
    try:
        listening["vad_aggressiveness"] = int(f.get("vad_aggressiveness", ""))
    except ValueError:
        errors["vad_aggressiveness"] = _("choose 0, 1, 2 or 3")
    if "detector" in f:  # an older form without the choice keeps the saved detector
        if f["detector"] in DETECTORS:
            listening["detector"] = f["detector"]
        else:
            errors["detector"] = _("choose Silero or WebRTC")
    language = f.get("commands_language", "").strip()
    phrases = _phrase_lines(f.get("phrases", ""), errors)
    current = state().config.listening.commands
    if phrases == DEFAULT_PHRASES.get(language_of(current.language)):
        phrases = None  # the built-in phrases, untouched: follow the language if it changes
    listening["commands"] = {
        "enabled": f.get("commands_enabled") == "on",
        "language": language,
        "phrases": phrases,
    }
    return {"listening": listening}


def _access_updates(f, errors: dict) -> dict[str, Any]:
    hosts = [h.strip() for h in re.split(r"[,\s]+", f.get("allowed_hosts", "")) if h.strip()]
    admin: dict[str, Any] = {"allowed_hosts": hosts}
    if "page_language" in f and not _is_protected("admin.language"):  # an older form keeps it
        admin["language"] = f["page_language"].strip() or "auto"
    return {"admin": admin}


def _dhis2_updates(f, errors: dict) -> dict[str, Any]:
    dhis2: dict[str, Any] = {key: f.get(key, "").strip() or None for key in DHIS2_CODES}
    dhis2["period_type"] = f.get("period_type", "monthly")
    if "min_circle_minutes" in f:  # an older form without it keeps the saved value
        minutes = _number(errors, "min_circle_minutes", f["min_circle_minutes"])
        if minutes is not None:
            dhis2["min_circle_minutes"] = minutes
    elements = {key: f.get(f"de_{key}", "").strip() for key in dhis2_measures()}
    dhis2["data_elements"] = {key: code for key, code in elements.items() if code}
    if "courses" in f:  # an older form without the field keeps the saved codes
        dhis2["courses"] = _course_lines(f["courses"], errors)
    return {"dhis2": dhis2}


SECTIONS = {  # form section -> what its form asks to change in the admin layer
    "box": _box_updates,
    "buttons": _button_updates,
    "listening": _listening_updates,
    "access": _access_updates,
    "dhis2": _dhis2_updates,
}


@bp.route("/", methods=["POST"])
def save():
    st = state()
    f = request.form
    values = {**_form_values(), **{k: f.get(k, "") for k in f}}
    values["listen_enabled"] = f.get("listen_enabled") == "on"
    values["commands_enabled"] = f.get("commands_enabled") == "on"
    errors: dict[str, str] = {}
    section = f.get("section", "box")
    if section not in SECTIONS:
        return _render(values, {"form_box": _("unknown settings section")}, 400)
    updates = SECTIONS[section](f, errors)
    if not errors:
        try:
            save_layer(updates)
        except ConfigError as exc:
            _place_problems(exc, section, errors)
    if errors:
        return _render(values, errors, 400)
    if section in ("access", "box"):  # the page answers to the new names from now on
        from local_admin import allowed_host_names
        from local_admin.security import HostCheck

        st.hosts = HostCheck(allowed_host_names(st.config))
    when = tell_box(st.control, Change(at_once=_l("volume") if section == "box" else ""))
    flash(_("Saved. %(when)s", when=when), "ok")
    return redirect(url_for("settings.settings") + f"#{section}")


# -- where each config key is on the page -------------------------------------------------------

_FIELD_OF_KEY = {
    "box.name": "box_name",
    "box.site": "box_site",
    "audio.volume": "volume",
    "audio.volume_cap": "volume_cap",
    "audio": "volume",
    "buttons": "buttons",
    "listening.enabled": "listen_enabled",
    "listening.vad_aggressiveness": "vad_aggressiveness",
    "listening.detector": "detector",
    "listening.commands.enabled": "commands_enabled",
    "listening.commands.language": "commands_language",
    "listening.commands.phrases": "phrases",
    "admin.allowed_hosts": "allowed_hosts",
    "admin.language": "page_language",
    "dhis2.period_type": "period_type",
    "dhis2.min_circle_minutes": "min_circle_minutes",
    "dhis2.courses": "courses",
    **{f"listening.{key}": f"listen_{key}" for key in LISTEN_NUMBERS},
    **{f"dhis2.{key}": key for key in DHIS2_CODES},
}


def field_of_key(key: str) -> str | None:
    """The form field that edits a dotted config key (or the nearest one that holds it)."""
    match = re.match(r"^buttons\.map\.(\d+)\.(press|hold)\b", key)
    if match:
        return f"btn{match[1]}_{match[2]}"
    match = re.match(r"^dhis2\.data_elements\.(\w+)$", key)
    if match and match[1] in dhis2_measures():
        return f"de_{match[1]}"
    parts = key.split(".")
    while parts:
        field = _FIELD_OF_KEY.get(".".join(parts))
        if field:
            return field
        parts.pop()
    return None


def _place_problems(exc: ConfigError, section: str, errors: dict[str, str]) -> None:
    """Each problem next to its field; one that no field on the page edits, on the form saved."""
    for key, message in exc.problems or (("", str(exc)),):
        field = field_of_key(key)
        course = re.match(r"^dhis2\.courses\.([\w-]+)$", key)
        if course:  # one box holds every course's code: say which line is wrong
            message = f"{course[1]}: {message}"
        if field:
            errors.setdefault(field, message)
        else:
            where = f" ({key})" if key else ""
            errors.setdefault(
                f"form_{section}",
                _("A saved setting that this page does not show is wrong%(where)s: %(message)s. "
                  "Ask the technician to fix the box's config file.", where=where, message=message),
            )
