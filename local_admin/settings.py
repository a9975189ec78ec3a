"""Box settings: name and site, volume and its cap, buttons, listening, admin access, DHIS2 codes.

Everything is saved to the admin layer `<data_dir>/admin-config.yaml` (atomically), after
`device.config.validate_admin_layer` and this module's own checks of the `admin` and `dhis2`
sections (whose schema the admin page owns). A refused save changes nothing on disk.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml
from flask import Blueprint, flash, redirect, render_template, request, url_for

from device.actions import ACTIONS, UnknownAction, validate_action_name
from device.config import ADMIN_CONFIG_NAME, ConfigError, validate_admin_layer
from device.fsutil import atomic_write_text
from local_admin import state
from local_admin.backends import dhis2_measures

bp = Blueprint("settings", __name__, url_prefix="/settings")

# A DHIS2 UID (11 characters) or a code, as the programme's DHIS2 instance names it.
DHIS2_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")
DHIS2_HELP = "a DHIS2 id or code: letters, digits, - _ . (like ImspTQPwCqd or CBX_SESSIONS)"
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
ADMIN_KEYS = {"host", "port", "allowed_hosts", "https"}
DHIS2_KEYS = {
    "org_unit",
    "data_elements",
    "category_option_combo",
    "attribute_option_combo",
    "period_type",
    "data_set",
}
LISTEN_NUMBERS = {  # form field -> (label, help)
    "noise_margin_db": (
        "Speech must be louder than the room by (dB)",
        "higher: fewer false starts",
    ),
    "speech_start_s": ("Speech starts after (s)", "how long someone must talk to count"),
    "speech_end_hangover_s": ("Speech ends after quiet of (s)", ""),
    "min_speech_db": ("Quietest speech (dBFS)", "below this is silence"),
}


class SettingsError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def validate_admin_section(section: Any) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise SettingsError("allowed_hosts", "admin: must be a mapping")
    unknown = sorted(set(section) - ADMIN_KEYS)
    if unknown:
        raise SettingsError("allowed_hosts", f"admin.{unknown[0]}: unknown key")
    hosts = section.get("allowed_hosts", [])
    if not isinstance(hosts, list):
        raise SettingsError("allowed_hosts", "must be a list of names")
    for host in hosts:
        if not isinstance(host, str) or not _host_ok(host):
            raise SettingsError("allowed_hosts", f"'{host}' is not a host name or IP address")
    port = section.get("port", 8080)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SettingsError("allowed_hosts", "admin.port: must be a port number 1 to 65535")
    if "host" in section and not isinstance(section["host"], str):
        raise SettingsError("allowed_hosts", "admin.host: must be an address like 0.0.0.0")
    return section


def _host_ok(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(HOSTNAME.match(host.lower().rstrip(".")))


def validate_dhis2_section(section: Any) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise SettingsError("org_unit", "dhis2: must be a mapping")
    unknown = sorted(set(section) - DHIS2_KEYS)
    if unknown:
        raise SettingsError("org_unit", f"dhis2.{unknown[0]}: unknown key")
    for key in ("org_unit", "category_option_combo", "attribute_option_combo", "data_set"):
        value = section.get(key)
        if value not in (None, "") and (not isinstance(value, str) or not DHIS2_CODE.match(value)):
            raise SettingsError(key, DHIS2_HELP)
    if section.get("period_type", "monthly") not in ("monthly", "weekly"):
        raise SettingsError("period_type", "choose monthly or weekly")
    elements = section.get("data_elements") or {}
    if not isinstance(elements, dict):
        raise SettingsError("org_unit", "dhis2.data_elements: must be a mapping")
    measures = dhis2_measures()
    for key, value in elements.items():
        if key not in measures:
            raise SettingsError(
                "org_unit", f"dhis2.data_elements.{key}: unknown (known: {', '.join(measures)})"
            )
        if value not in (None, "") and (not isinstance(value, str) or not DHIS2_CODE.match(value)):
            raise SettingsError(f"de_{key}", DHIS2_HELP)
    if section.get("org_unit") and elements:
        from device.usage import Dhis2ConfigError, dhis2_settings

        try:
            dhis2_settings(section)
        except Dhis2ConfigError as exc:
            raise SettingsError("org_unit", str(exc)) from exc
    return section


def admin_layer_path():
    return state().data_dir / ADMIN_CONFIG_NAME


def read_layer() -> dict[str, Any]:
    path = admin_layer_path()
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _deep_merge(base: dict, updates: dict) -> dict:
    out = dict(base)
    for key, value in updates.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and key not in ("data_elements", "phrases", "dhis2")
        ):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def save_layer(updates: dict[str, Any]) -> None:
    """Merge `updates` into the admin layer, validate everything, write it atomically."""
    st = state()
    with st.config_lock:
        layer = _deep_merge(read_layer(), updates)
        validate_admin_section(layer.get("admin", {}))
        validate_dhis2_section(layer.get("dhis2", {}))
        if "listening" in layer:
            from device.listening.settings import ListeningConfigError, listening_settings

            try:
                listening_settings(layer["listening"])
            except ListeningConfigError as exc:
                raise ConfigError(f"admin page: {exc}") from exc
        new_config = validate_admin_layer(st.config, layer, "admin page")
        text = "# Written by the Circlebox admin page. Edit with care: unknown keys are errors.\n"
        text += yaml.safe_dump(layer, sort_keys=False, allow_unicode=True)
        atomic_write_text(admin_layer_path(), text)
        st.config = new_config


def _is_protected(dotted: str) -> bool:
    protected = state().config.protected
    return any(
        dotted == p or dotted.startswith(p + ".") or p.startswith(dotted + ".") for p in protected
    )


def _form_values() -> dict[str, Any]:
    c = state().config
    listening = dict(c.listening or {})
    commands = dict(listening.get("commands") or {})
    try:
        from device.listening.settings import listening_settings

        ls = listening_settings(listening)
        defaults = {k: getattr(ls, k) for k in LISTEN_NUMBERS}
        defaults["vad_aggressiveness"] = ls.vad_aggressiveness
        defaults["enabled"] = ls.enabled
        phrases = ls.commands.phrases
        cmd_enabled, cmd_lang = ls.commands.enabled, ls.commands.language
    except Exception:
        defaults, phrases, cmd_enabled, cmd_lang = {}, {}, True, "en"
    dhis2 = dict(c.dhis2 or {})
    values: dict[str, Any] = {
        "box_name": c.box.name,
        "box_site": c.box.site,
        "volume": round(c.audio.volume * 100),
        "volume_cap": round(c.audio.volume_cap * 100),
        "listen_enabled": listening.get("enabled", defaults.get("enabled", True)),
        "vad_aggressiveness": listening.get(
            "vad_aggressiveness", defaults.get("vad_aggressiveness", 2)
        ),
        "commands_enabled": commands.get("enabled", cmd_enabled),
        "commands_language": commands.get("language", cmd_lang),
        "phrases": "\n".join(f"{p} = {a}" for p, a in phrases.items()),
        "allowed_hosts": ", ".join((c.admin or {}).get("allowed_hosts") or []),
        "org_unit": dhis2.get("org_unit", ""),
        "category_option_combo": dhis2.get("category_option_combo", ""),
        "data_set": dhis2.get("data_set", ""),
        "period_type": dhis2.get("period_type", "monthly"),
    }
    for key in LISTEN_NUMBERS:
        values[f"listen_{key}"] = listening.get(key, defaults.get(key, ""))
    for key in dhis2_measures():
        values[f"de_{key}"] = (dhis2.get("data_elements") or {}).get(key, "")
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
        dhis2_elements=dhis2_measures(),
        protected=_is_protected,
    ), status


@bp.route("/", methods=["GET"])
def settings():
    return _render(_form_values(), {})


def _num(errors: dict, field: str, text: str, lo: float, hi: float, label: str) -> float | None:
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        errors[field] = f"{label}: enter a number"
        return None
    if not lo <= value <= hi:
        errors[field] = f"{label}: must be between {lo:g} and {hi:g}"
        return None
    return int(value) if value.is_integer() else value


def _parse_phrases(text: str, errors: dict) -> dict[str, str]:
    phrases: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if "=" not in line:
            errors["phrases"] = (
                f"line {number}: write it as: phrase = action (like: next step = next)"
            )
            break
        phrase, action = (s.strip() for s in line.rsplit("=", 1))
        try:
            validate_action_name(action)
        except UnknownAction as exc:
            errors["phrases"] = f"line {number}: {exc}"
            break
        if len(phrase.split()) < 2:
            errors["phrases"] = (
                f"line {number}: use two words or more, so ordinary talk does not trigger it"
            )
            break
        phrases[phrase] = action
    return phrases


@bp.route("/", methods=["POST"])
def save():
    st = state()
    f = request.form
    values = {**_form_values(), **{k: f.get(k, "") for k in f}}
    values["listen_enabled"] = f.get("listen_enabled") == "on"
    values["commands_enabled"] = f.get("commands_enabled") == "on"
    errors: dict[str, str] = {}
    section = f.get("section", "box")
    updates: dict[str, Any] = {}

    if section == "box":
        name = f.get("box_name", "").strip()
        if not name:
            errors["box_name"] = "give the box a name, like clinic-north"
        elif len(name) > 64:
            errors["box_name"] = "keep the name under 64 characters"
        site = f.get("box_site", "").strip()
        if len(site) > 120:
            errors["box_site"] = "keep the site under 120 characters"
        updates["box"] = {"name": name, "site": site}
        audio: dict[str, Any] = {}
        cap = (
            None
            if _is_protected("audio.volume_cap")
            else _num(errors, "volume_cap", f.get("volume_cap", ""), 10, 100, "Loudest allowed")
        )
        vol = (
            None
            if _is_protected("audio.volume")
            else _num(errors, "volume", f.get("volume", ""), 0, 100, "Volume")
        )
        if cap is not None:
            audio["volume_cap"] = round(cap / 100, 3)
        if vol is not None:
            limit = cap if cap is not None else st.config.audio.volume_cap * 100
            if vol > limit:
                errors["volume"] = f"Volume: must not be above the loudest allowed ({limit:g}%)"
            audio["volume"] = round(vol / 100, 3)
        if audio:
            updates["audio"] = audio
    elif section == "buttons":
        if _is_protected("buttons"):
            errors["buttons"] = "the button map is locked in this box's main config"
        else:
            mapping = []
            for i, button in enumerate(st.config.buttons.map):
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
            updates["buttons"] = {"map": mapping}
    elif section == "listening":
        listening: dict[str, Any] = {"enabled": f.get("listen_enabled") == "on"}
        ranges = {
            "noise_margin_db": (0, 40),
            "speech_start_s": (0.09, 2),
            "speech_end_hangover_s": (0.09, 2),
            "min_speech_db": (-96, -10),
        }
        for key, (label, _help) in LISTEN_NUMBERS.items():
            value = _num(errors, f"listen_{key}", f.get(f"listen_{key}", ""), *ranges[key], label)
            if value is not None:
                listening[key] = float(value)
        try:
            vad = int(f.get("vad_aggressiveness", "2"))
            if vad not in (0, 1, 2, 3):
                raise ValueError
            listening["vad_aggressiveness"] = vad
        except ValueError:
            errors["vad_aggressiveness"] = "choose 0, 1, 2 or 3"
        language = f.get("commands_language", "").strip()
        if not re.fullmatch(r"[a-z]{2,3}([_-][A-Za-z]{2,4})?", language):
            errors["commands_language"] = "a language code like en or ko"
        phrases = _parse_phrases(f.get("phrases", ""), errors)
        commands: dict[str, Any] = {
            "enabled": f.get("commands_enabled") == "on",
            "language": language,
        }
        if phrases:
            commands["phrases"] = phrases
        listening["commands"] = commands
        updates["listening"] = listening
    elif section == "access":
        hosts = [h.strip() for h in re.split(r"[,\s]+", f.get("allowed_hosts", "")) if h.strip()]
        for host in hosts:
            if not _host_ok(host):
                errors["allowed_hosts"] = f"'{host}' is not a host name or IP address"
        updates["admin"] = {"allowed_hosts": hosts}
    elif section == "dhis2":
        dhis2: dict[str, Any] = {}
        for key in ("org_unit", "category_option_combo", "data_set"):
            value = f.get(key, "").strip()
            if value and not DHIS2_CODE.match(value):
                errors[key] = DHIS2_HELP
            if value:
                dhis2[key] = value
        period = f.get("period_type", "monthly")
        if period not in ("monthly", "weekly"):
            errors["period_type"] = "choose monthly or weekly"
        dhis2["period_type"] = period
        elements = {}
        for key in dhis2_measures():
            value = f.get(f"de_{key}", "").strip()
            if value and not DHIS2_CODE.match(value):
                errors[f"de_{key}"] = DHIS2_HELP
            if value:
                elements[key] = value
        dhis2["data_elements"] = elements
        updates["dhis2"] = dhis2
    else:
        errors["section"] = "unknown settings section"

    if not errors:
        try:
            save_layer(updates)
        except SettingsError as exc:
            errors[exc.field] = str(exc)
        except ConfigError as exc:
            _config_errors(str(exc), errors)
    if errors:
        return _render(values, errors, 400)
    if section in ("access", "box"):  # the page answers to the new names from now on
        from local_admin import allowed_host_names
        from local_admin.security import HostCheck

        st.hosts = HostCheck(allowed_host_names(st.config))
    flash("Saved. The box uses the new settings from its next circle.", "ok")
    return redirect(url_for("settings.settings") + f"#{section}")


_FIELD_OF_KEY = {
    "box.name": "box_name",
    "box.site": "box_site",
    "audio.volume": "volume",
    "audio.volume_cap": "volume_cap",
    "audio": "volume",
}


def _config_errors(message: str, errors: dict) -> None:
    body = message.split(": ", 1)[1] if ": " in message else message
    for problem in body.split("; "):
        key, _, msg = problem.partition(": ")
        match = re.match(r"^buttons\.map\.(\d+)\.(press|hold)", key)
        if match:
            errors[f"btn{match[1]}_{match[2]}"] = msg
        elif key.startswith("listening."):
            name = key.removeprefix("listening.")
            errors[
                f"listen_{name}"
                if name in LISTEN_NUMBERS
                else ("phrases" if "phrases" in name else "listen_enabled")
            ] = msg
        elif key in _FIELD_OF_KEY:
            errors[_FIELD_OF_KEY[key]] = msg
        elif "protected" in problem:
            errors["section"] = problem
        else:
            errors.setdefault("section", problem)
