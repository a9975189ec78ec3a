"""Circles (session scripts) on disk, their versions, and the editor's form <-> YAML mapping.

Where each file lives is `device.datafolder.DataFolder` (the box's own copies, drafts, history,
recordings); which copy of a circle the box plays is `device.content.resolve_circle`. This
module lists and edits the box's own copies; circles a content bundle installed are listed too,
marked installed, and are copied to be edited (a release is never changed in place).
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from flask_babel import lazy_gettext as _l

from device.content import CircleSource, Origin, resolve_circle, script_candidates
from device.datafolder import DataFolder
from device.fsutil import atomic_write_text
from device.problems import N_, Problem
from device.script import (
    DEFAULT_MESSAGES,
    STEP_ID,
    LoadedScript,
    Pause,
    Recording,
    ScriptError,
    compose_circle_yaml,
    load_script,
    packaged_scripts_dir,
    parse_script,
)
from local_admin.i18n import gettext, problem_text

KINDS = {
    "say": _l("Speak (then wait for NEXT)"),
    "exercise": _l("Guided exercise (with pauses)"),
    "round": _l("Round (each person in turn)"),
    "timer": _l("Timer (discussion or break-out)"),
    "bell": _l("Bell"),
}
BELLS = ("soft_bell", "bell", "warn_bell", "end_bell", "chime")
BETWEEN = ("soft_bell", "bell", "chime", "none")
SPOKEN = "spoken"  # the between-turns choice "words": the round's `between_turns: {say: ...}`
# A round's own spoken prompts besides its main one: form field -> the YAML key of its text.
ROUND_TEXTS = {"between_say": "between_turns", "reminder": "reminder", "wrap_up": "wrap_up"}
SOUND_WORDS = {  # a bell's name as the editor's lists show it
    "soft_bell": _l("soft bell"),
    "bell": _l("bell"),
    "warn_bell": _l("warn bell"),
    "end_bell": _l("end bell"),
    "chime": _l("chime"),
    "none": _l("none"),
    SPOKEN: _l("words (written below)"),
}
TURN_FIELDS = {  # form field -> (label, default, schema key)
    "count": (_l("People (turns)"), "", "count"),
    "end_on_silence_s": (_l("Turn ends after silence (s)"), 3, "end_on_silence_s"),
    "pass_on_silence_s": (_l("Counts as a pass after silence (s)"), 10, "pass_on_silence_s"),
    "warn_s": (_l("Gentle reminder after (s)"), 105, "warn_s"),
    "max_s": (_l("Wrap-up after (s)"), 180, "max_s"),
}
# "[pause 4]" / "[recording welcome.wav]" inside a step's text. Linear on any input: the value
# may hold no bracket, so from each "[" the scan stops at the next "[" or "]" and no two parts of
# the pattern compete for the same characters (the old `\s+([^\]]+?)\s*` was cubic on an
# unclosed "[pause" and spaces: 3,000 spaces took seconds, with the GIL held for every page).
MARKER = re.compile(r"\[(pause|recording)(?=\s)([^\[\]]*)\]", re.IGNORECASE)
# A step's text as the editor sends it (markers included), checked before any pattern runs. One
# text part may be 4,000 characters (device.script.MAX_TEXT); a step holds a few of them.
MAX_STEP_TEXT = 20_000


def scripts_dir(data_dir: Path) -> Path:
    return DataFolder(data_dir).scripts


def recordings_dir(data_dir: Path) -> Path:
    return DataFolder(data_dir).recordings


def valid_id(script_id: str) -> bool:
    return bool(STEP_ID.match(script_id or ""))


@dataclass
class CircleInfo:
    id: str
    title: str
    version: int | None
    language: str
    steps: int
    packaged: bool  # only the packaged copy exists (editing saves a copy in the data folder)
    error: str | None
    draft: bool
    origin: str = Origin.BOX.value  # device.content.Origin of the copy the box plays
    release_version: int | None = None  # the content bundle's version, when installed
    shadowed: str | None = None  # a note when the box's own copy is not the one that plays

    @property
    def installed(self) -> bool:
        return self.origin == Origin.INSTALLED.value

    @property
    def editable(self) -> bool:
        """Installed circles are copied to be edited: a release is never changed in place."""
        return not self.installed


def _user_path(data_dir: Path, script_id: str) -> Path:
    return DataFolder(data_dir).script(script_id)


def draft_path(data_dir: Path, script_id: str) -> Path:
    return DataFolder(data_dir).draft(script_id)


def history_dir(data_dir: Path, script_id: str) -> Path:
    return DataFolder(data_dir).history(script_id)


def resolve(data_dir: Path, script_id: str) -> CircleSource | None:
    """The copy of circle `script_id` the box would play (device.content.resolve_circle), or
    None for an invalid id, no such circle, or a broken first choice (see `find_path`)."""
    if not valid_id(script_id):
        return None
    try:
        return resolve_circle(script_id, DataFolder(data_dir))
    except ScriptError:
        return None


def find_path(data_dir: Path, script_id: str) -> Path | None:
    """The file of the copy the box plays; for a broken circle the first copy found (so the
    editor can show it and name its problem); None when there is no such circle."""
    source = resolve(data_dir, script_id)
    if source is not None and source.loaded.path is not None and source.loaded.path.exists():
        return source.loaded.path
    if not valid_id(script_id):
        return None
    found = script_candidates(script_id, DataFolder(data_dir))
    return found[0][0] if found else None


def active_steps(data_dir: Path, name: str) -> list[tuple[str, str]]:
    """(id, title) of each step of the circle the box plays for `name` (session.script): the
    panel's "Go to step" list, from the same resolver as the runtime. [] if it cannot load."""
    try:
        script = resolve_circle(name, DataFolder(data_dir)).loaded.script
    except ScriptError:
        return []
    return [(step.id, step.title or step.id) for step in script.steps]


def active_id(data_dir: Path, name: str) -> str | None:
    """The id of the circle the box plays for `name` (a session.script may be a file path)."""
    try:
        return resolve_circle(name, DataFolder(data_dir)).script_id
    except ScriptError:
        return None


def _ids(data: DataFolder) -> list[str]:
    """Every circle id on the box: its own, installed by a bundle, packaged."""
    ids: dict[str, None] = {}
    for directory in (*data.script_dirs(), packaged_scripts_dir()):
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else ():
            if valid_id(path.stem):
                ids.setdefault(path.stem)
    return list(ids)


# Where a circle that plays comes from (device.content.Origin), in the reader's words.
_ORIGIN_WORDS = {"installed": _l("installed"), "packaged": _l("packaged")}


def list_circles(data_dir: Path) -> list[CircleInfo]:
    """One entry per circle: the copy the box would play for its id, with where it comes from."""
    data = DataFolder(data_dir)
    seen: dict[str, CircleInfo] = {}
    for script_id in _ids(data):
        found = script_candidates(script_id, data)
        try:
            source = resolve_circle(script_id, data)
        except ScriptError:  # a broken first choice: show it with its problem
            path, origin = found[0]
            info = _info(path, script_id, origin is Origin.PACKAGED)
            info.origin = origin.value
        else:
            path = source.loaded.path or data.script(script_id)
            origin = Origin.BOX if source.origin is Origin.INTERRUPTED_SAVE else source.origin
            info = CircleInfo(script_id, source.loaded.script.title or script_id, source.version,
                              source.loaded.script.language, len(source.loaded.script.steps),
                              origin is Origin.PACKAGED, None, False, origin.value, source.release_version)
            own = data.script(script_id)
            if origin is not Origin.BOX and own.exists():
                info.shadowed = gettext("The box's own copy (%(file)s) is older: the %(origin)s version "
                                        "%(version)s plays. Copy it to edit.", file=own.name,
                                        origin=_ORIGIN_WORDS.get(origin.value, origin.value),
                                        version=source.version)
        info.draft = data.draft(script_id).exists()
        seen[script_id] = info
    drafts = data.drafts
    for path in sorted(drafts.glob("*.yaml")) if drafts.is_dir() else ():
        if path.stem not in seen and valid_id(path.stem):  # a new circle whose first save failed
            raw = raw_dict(path.read_text(encoding="utf-8"))
            steps = raw.get("steps") if isinstance(raw.get("steps"), list) else []
            title = str(raw.get("title") or path.stem)
            seen[path.stem] = CircleInfo(path.stem, title, None, str(raw.get("language", "?")),
                                         len(steps), False, gettext("not saved yet"), True)
    return sorted(seen.values(), key=lambda c: c.title.lower())


def _info(path: Path, script_id: str, packaged: bool) -> CircleInfo:
    """A circle's summary, parsed once per version of its file (the list page is hot)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    cached = _INFO_CACHE.get(key)
    if cached is None:
        try:
            s = load_script(path).script
            cached = CircleInfo(
                s.script,
                s.title or s.script,
                s.version,
                s.language,
                len(s.steps),
                packaged,
                None,
                False,
            )
        except ScriptError as exc:
            problem = exc.problems[0] if exc.problems else str(exc)
            cached = CircleInfo(script_id, script_id, None, "?", 0, packaged, problem, False)
        if len(_INFO_CACHE) > 500:
            _INFO_CACHE.clear()
        _INFO_CACHE[key] = cached
    return CircleInfo(**{**cached.__dict__, "packaged": packaged})


def load(data_dir: Path, script_id: str) -> LoadedScript:
    path = find_path(data_dir, script_id)
    if path is None:
        raise ScriptError(script_id, [Problem(N_("no such circle"))])
    return load_script(path)


_INFO_CACHE: dict[tuple[str, int, int], CircleInfo] = {}


def raw_dict(text: str) -> dict[str, Any]:
    try:
        _root, data = compose_circle_yaml(text, "circle")  # bounded, libyaml when present
    except (yaml.YAMLError, ScriptError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def history(data_dir: Path, script_id: str) -> list[dict[str, Any]]:
    directory = history_dir(data_dir, script_id)
    out = []
    if directory.is_dir():
        for path in directory.glob("*.yaml"):
            match = re.match(r"^(\d+)-(\d+)\.yaml$", path.name)
            if match:
                out.append(
                    {
                        "name": path.name,
                        "version": int(match[1]),
                        "saved_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(match[2]))),
                    }
                )
    return sorted(out, key=lambda h: (h["version"], h["name"]), reverse=True)


def history_file(data_dir: Path, script_id: str, name: str) -> Path | None:
    if not valid_id(script_id) or not re.match(r"^\d+-\d+\.yaml$", name or ""):
        return None
    path = history_dir(data_dir, script_id) / name
    return path if path.exists() else None


def next_version(data_dir: Path, script_id: str) -> int:
    versions = [h["version"] for h in history(data_dir, script_id)]
    path = find_path(data_dir, script_id)
    if path is not None:
        with contextlib.suppress(ScriptError):
            versions.append(load_script(path).script.version)
    return max(versions, default=0) + 1


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def with_version(text: str, version: int) -> str:
    """The script text with its version set (keeps the therapist's layout where it can)."""
    pattern = re.compile(r"^version:\s*\d+\s*$", re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(f"version: {version}", text, count=1)
    data = raw_dict(text)
    data["version"] = version
    return dump_yaml(data)


def working_text(data_dir: Path, script_id: str) -> str | None:
    """The circle as it is being worked on: its draft (studio recordings, a save that did not
    finish), else the copy the box plays; None when there is neither."""
    if not valid_id(script_id):
        return None
    draft = draft_path(data_dir, script_id)
    path = draft if draft.exists() else find_path(data_dir, script_id)
    return path.read_text(encoding="utf-8") if path is not None else None


def write_draft(data_dir: Path, script_id: str, text: str) -> Path:
    path = draft_path(data_dir, script_id)
    atomic_write_text(path, text)
    return path


def activate(data_dir: Path, script_id: str, text: str) -> Path:
    """Make `text` the live version; the previous live user file goes to the history first."""
    live = _user_path(data_dir, script_id)
    if live.exists():
        old = live.read_text(encoding="utf-8")
        try:
            old_version = parse_script(old, str(live)).script.version
        except ScriptError:
            old_version = 0
        stamp = int(time.time())
        atomic_write_text(history_dir(data_dir, script_id) / f"{old_version}-{stamp}.yaml", old)
    atomic_write_text(live, text)
    with contextlib.suppress(FileNotFoundError):
        draft_path(data_dir, script_id).unlink()
    return live


def finish_interrupted_saves(data_dir: Path) -> list[str]:
    """Finish saves a power cut interrupted at the switch (`device.content.interrupted_save`):
    make each such draft live, as the save would have done; returns the circle ids switched. A
    draft already live (the cut came just before its removal) is removed; a draft whose render
    failed stays a draft for the editor to offer."""
    from device.content import interrupted_save

    drafts = DataFolder(data_dir).drafts
    switched: list[str] = []
    for path in sorted(drafts.glob("*.yaml")) if drafts.is_dir() else ():
        live = _user_path(data_dir, path.stem)
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if live.exists() and live.read_bytes() == path.read_bytes():  # cut after the switch, before the
                path.unlink()  # draft was removed: the save is done
                continue
        draft = interrupted_save(data_dir, path.stem)
        if draft is not None:
            activate(data_dir, path.stem, draft.text)
            switched.append(path.stem)
    return switched


def delete(data_dir: Path, script_id: str) -> bool:
    """Delete the user copy (its history stays, so it can still be restored)."""
    live = _user_path(data_dir, script_id)
    if not valid_id(script_id) or not live.exists():
        return False
    stamp = int(time.time())
    old = live.read_text(encoding="utf-8")
    try:
        version = parse_script(old, str(live)).script.version
    except ScriptError:
        version = 0
    atomic_write_text(history_dir(data_dir, script_id) / f"{version}-{stamp}.yaml", old)
    live.unlink()
    with contextlib.suppress(FileNotFoundError):
        draft_path(data_dir, script_id).unlink()
    return True


# -- form <-> script ----------------------------------------------------------------------------


def parts_to_text(parts: Any) -> str:
    if parts is None:
        return ""
    if isinstance(parts, str | dict):
        parts = [parts]
    chunks = []
    for part in parts:
        if isinstance(part, str):
            chunks.append(part.strip())
        elif isinstance(part, dict) and "pause" in part:
            chunks.append(
                f"[pause {part['pause']:g}]"
                if isinstance(part["pause"], int | float)
                else f"[pause {part['pause']}]"
            )
        elif isinstance(part, dict) and "audio" in part:
            chunks.append(f"[recording {part['audio']}]")
        elif isinstance(part, Pause):
            chunks.append(f"[pause {part.pause:g}]")
        elif isinstance(part, Recording):
            chunks.append(f"[recording {part.audio}]")
    return "\n".join(chunks)


def text_to_parts(text: str) -> list[Any] | str:
    """'Breathe in. [pause 4] Breathe out.' -> ['Breathe in.', {'pause': 4.0}, 'Breathe out.']

    `text` must be at most MAX_STEP_TEXT characters (form_to_script says so to the user first).
    """
    if len(text) > MAX_STEP_TEXT:
        raise ValueError(f"a step's text is at most {MAX_STEP_TEXT:,} characters")
    parts: list[Any] = []
    pos = 0
    for match in MARKER.finditer(text):
        if not match[2].strip():
            continue  # "[pause ]": not a marker, left in the text as written
        before = " ".join(text[pos : match.start()].split())
        if before:
            parts.append(before)
        kind, value = match[1].lower(), match[2].strip()
        if kind == "pause":
            try:
                number = float(value.rstrip("s"))
            except ValueError:
                parts.append({"pause": value})  # the schema names the problem
            else:
                parts.append({"pause": int(number) if number.is_integer() else number})
        else:
            parts.append({"audio": value})
        pos = match.end()
    rest = " ".join(text[pos:].split())
    if rest:
        parts.append(rest)
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    return parts


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def step_to_form(step: dict[str, Any]) -> dict[str, Any]:
    kind = step.get("kind", "say")
    text_key = "prompt" if kind == "round" else ("say" if kind != "bell" else None)
    turns = step.get("turns") or {}
    between = step.get("between_turns", "soft_bell")
    form = {
        "orig": step.get("id", ""),
        "id": step.get("id", ""),
        "kind": kind,
        "title": step.get("title") or "",
        "text": parts_to_text(step.get(text_key)) if text_key else "",
        "core": bool(step.get("core")),
        "then": step.get("then", "continue" if kind == "bell" else "wait_for_next"),
        "between": between if isinstance(between, str) else SPOKEN,
        "duration_min": _fmt(step["duration_s"] / 60)
        if isinstance(step.get("duration_s"), int | float)
        else _fmt(step.get("duration_s")),
        "warn_min": _fmt(step["warn_before_s"] / 60)
        if isinstance(step.get("warn_before_s"), int | float)
        else "",
        "bell": step.get("bell", "bell"),
        "bells": _fmt(step.get("count", 1)) if kind == "bell" else "1",
        "notes": parts_to_text(step.get("notes")),  # the facilitator note (spoken only in rehearsal)
        "between_say": parts_to_text(between.get("say")) if isinstance(between, dict) else "",
        "reminder": parts_to_text(step.get("reminder")),
        "wrap_up": parts_to_text(step.get("wrap_up")),
    }
    for name, (_label, _default, key) in TURN_FIELDS.items():
        form[name] = _fmt(turns.get(key))
    return form


def script_to_form(data: dict[str, Any]) -> dict[str, Any]:
    steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    messages = data.get("messages") if isinstance(data.get("messages"), dict) else {}
    return {
        "script": data.get("script", ""),
        "title": data.get("title") or "",
        "language": data.get("language", "en_US"),
        "voice": data.get("voice") or "",
        "allow_other_language": data.get("allow_other_language") is True,
        "steps": [step_to_form(s if isinstance(s, dict) else {}) for s in steps],
        "messages": {name: parts_to_text(messages.get(name)) for name in DEFAULT_MESSAGES},
    }


def recording_words(data: dict[str, Any]) -> dict[str, str]:
    """audio file -> the words said in it, from every recording of a circle's YAML (the editor
    shows a recording as a `[recording file]` marker; its words are kept from here)."""
    words: dict[str, str] = {}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("audio"), str) and isinstance(value.get("text"), str):
                words.setdefault(value["audio"], value["text"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return words


def _with_words(parts: Any, words: dict[str, str]) -> Any:
    """Parts with each recording's words put back (see recording_words)."""
    if isinstance(parts, dict):
        if parts.get("audio") in words and "text" not in parts:
            return {**parts, "text": words[parts["audio"]]}
        return {k: _with_words(v, words) for k, v in parts.items()}
    if isinstance(parts, list):
        return [_with_words(p, words) for p in parts]
    return parts


def form_from_request(values: Any) -> dict[str, Any]:
    """The editor form as posted (a MultiDict), kept as strings for redisplay."""
    try:
        count = max(0, min(100, int(values.get("nsteps", "0"))))
    except ValueError:
        count = 0
    steps = []
    for i in range(count):

        def get(name: str, default: str = "", i: int = i) -> str:
            return str(values.get(f"s{i}_{name}", default))

        step = {
            "orig": get("orig"),
            "id": get("id").strip(),
            "kind": get("kind", "say"),
            "title": get("title").strip(),
            "text": get("text"),
            "core": get("core") == "on",
            "then": get("then", "wait_for_next"),
            "between": get("between", "soft_bell"),
            "duration_min": get("duration_min").strip(),
            "warn_min": get("warn_min").strip(),
            "bell": get("bell", "bell"),
            "bells": get("bells", "1").strip(),
            # None: the form had no note field (kept from the saved circle), "" clears the note
            "notes": str(values[f"s{i}_notes"]) if f"s{i}_notes" in values else None,
        }
        for name in ROUND_TEXTS:  # None as for the note: the form had no such field
            step[name] = str(values[f"s{i}_{name}"]) if f"s{i}_{name}" in values else None
        for name in TURN_FIELDS:
            step[name] = get(name).strip()
        steps.append(step)
    shown = values.get("messages_shown") == "1"  # the form had the messages' fields
    return {
        "script": str(values.get("script", "")).strip(),
        "title": str(values.get("title", "")).strip(),
        "language": str(values.get("language", "")).strip(),
        "voice": str(values.get("voice", "")).strip(),
        "allow_other_language": values.get("allow_other_language") == "on",
        "steps": steps,
        "messages": {name: str(values.get(f"msg_{name}", "")) for name in DEFAULT_MESSAGES} if shown else None,
    }


def new_step(index: int, kind: str = "say", taken: set[str] | None = None) -> dict[str, Any]:
    """A blank step with a name no other step has (step-4, or step-5 if step-4 is taken)."""
    taken = taken or set()
    number = index + 1
    while f"step-{number}" in taken:
        number += 1
    return step_to_form({"id": f"step-{number}", "kind": kind, "core": False})


def _number(errors: dict[str, str], key: str, text: str, *, scale: float = 1.0) -> float | None:
    if text == "":
        return None
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        errors[key] = gettext("enter a number, like 3 or 2.5")
        return None
    if value != value or value in (float("inf"), float("-inf")):
        errors[key] = gettext("enter a number, like 3 or 2.5")
        return None
    value *= scale
    return int(value) if float(value).is_integer() else value


def form_to_script(
    form: dict[str, Any], base: dict[str, Any] | None, version: int, errors: dict[str, str],
    words: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Build the script dict from the form; number problems go into `errors` by field name.

    Keys the form does not show (a round's between-turns words, reminder and wrap-up when the
    form lacks their fields) are kept from `base`, the saved version, step by step (matched by
    the step's original id); so are the messages when the form did not show their fields. A
    recording keeps its words (`recording_words` of `base`, plus `words` for recordings just
    uploaded).
    """
    base = base or {}
    words = {**recording_words(base), **(words or {})}
    base_steps = {s.get("id"): s for s in base.get("steps") or [] if isinstance(s, dict)}
    data: dict[str, Any] = {"script": form["script"]}
    if form["title"]:
        data["title"] = form["title"]
    data["version"] = version
    data["language"] = form["language"]
    if form["voice"]:
        data["voice"] = form["voice"]
    steps = []
    for i, f in enumerate(form["steps"]):
        old = dict(base_steps.get(f["orig"]) or {})
        kind = f["kind"]  # an unknown kind is named by the schema's own error
        step: dict[str, Any] = {"id": f["id"], "kind": kind}
        if f["title"]:
            step["title"] = f["title"]
        if f["core"]:
            step["core"] = True
        old_kind = old.get("kind", "say")
        keep = {}
        if old_kind == kind:
            keep = {k: v for k, v in old.items() if k in ("reminder", "wrap_up", "messages")}
            if kind == "round" and isinstance(old.get("between_turns"), dict):
                keep["between_turns"] = old["between_turns"]
            if kind == "round":  # what the form has a field for is the form's, even when empty
                given = {key for name, key in ROUND_TEXTS.items() if f.get(name) is not None}
                keep = {k: v for k, v in keep.items() if k not in given}
        if len(f["text"]) > MAX_STEP_TEXT:  # before any pattern reads it
            errors[f"s{i}_text"] = gettext(
                "this text is %(length)s characters; a step can say at most %(limit)s: split it into more steps",
                length=f"{len(f['text']):,}", limit=f"{MAX_STEP_TEXT:,}")
            f = {**f, "text": f["text"][:MAX_STEP_TEXT]}
        if kind in ("say", "exercise", "round") and not f["text"].strip():
            errors[f"s{i}_text"] = gettext("write what the box says here, or upload a recording")
        if kind in ("say", "exercise"):
            step["say"] = text_to_parts(f["text"])
            step["then"] = f["then"]
        elif kind == "round":
            step["prompt"] = text_to_parts(f["text"])
            _put_round_texts(step, f, errors, f"s{i}_")
            if "between_turns" not in step and (f["between"] != SPOKEN or "between_turns" not in keep):
                step["between_turns"] = f["between"] if f["between"] in BETWEEN else "soft_bell"
            turns: dict[str, Any] = {}
            old_turns = (
                old.get("turns")
                if old_kind == "round" and isinstance(old.get("turns"), dict)
                else {}
            )
            for name, (_l, _d, key) in TURN_FIELDS.items():
                value = _number(errors, f"s{i}_{name}", f[name])
                if value is not None:
                    turns[key] = value
            if "end_round_on_silence_s" in old_turns:
                turns["end_round_on_silence_s"] = old_turns["end_round_on_silence_s"]
            if turns:
                step["turns"] = turns
            step["then"] = f["then"]
        elif kind == "timer":
            if f["text"].strip():
                step["say"] = text_to_parts(f["text"])
            duration = _number(errors, f"s{i}_duration_min", f["duration_min"], scale=60)
            if duration is None and f"s{i}_duration_min" not in errors:
                errors[f"s{i}_duration_min"] = gettext("enter how many minutes the timer runs")
            elif duration is not None:
                step["duration_s"] = duration
            warn = _number(errors, f"s{i}_warn_min", f["warn_min"], scale=60)
            if warn is not None:
                step["warn_before_s"] = warn
            step["then"] = f["then"]
        elif kind == "bell":
            step["bell"] = f["bell"]
            bells = _number(errors, f"s{i}_bells", f["bells"] or "1")
            step["count"] = bells if bells is not None else 1
            step["then"] = f["then"]
        _put_notes(step, f.get("notes"), old, errors, f"s{i}_notes")
        step.update({k: v for k, v in keep.items() if k not in step})
        steps.append(step)
    data["steps"] = steps
    if form.get("messages") is not None:
        messages = {}
        for name, text in form["messages"].items():
            if len(text) > MAX_STEP_TEXT:
                errors[f"msg_{name}"] = gettext("this text is %(length)s characters; at most %(limit)s",
                                                length=f"{len(text):,}", limit=f"{MAX_STEP_TEXT:,}")
            elif text.strip():
                messages[name] = text_to_parts(text)
        if messages:
            data["messages"] = messages
    elif isinstance(base.get("messages"), dict) and base["messages"]:
        data["messages"] = base["messages"]
    if form.get("allow_other_language"):
        data["allow_other_language"] = True
    return _with_words(data, words) if words else data


def _put_round_texts(step: dict[str, Any], f: dict[str, Any], errors: dict[str, str], prefix: str) -> None:
    """A round's between-turns words (when "words" is chosen), gentle reminder and wrap-up from
    the form's fields; a field the form lacks (None) is left to `keep`. An empty reminder or
    wrap-up means the box's own message (`messages:`), so it is left out."""
    for name, key in ROUND_TEXTS.items():
        text = f.get(name)
        if text is None or (name == "between_say" and f["between"] != SPOKEN):
            continue
        if len(text) > MAX_STEP_TEXT:
            errors[prefix + name] = gettext("this text is %(length)s characters; at most %(limit)s",
                                            length=f"{len(text):,}", limit=f"{MAX_STEP_TEXT:,}")
        elif name == "between_say" and not text.strip():
            errors[prefix + name] = gettext("write the words the box says between turns, or choose a bell")
        elif name == "between_say":
            step[key] = {"say": text_to_parts(text)}
        elif text.strip():
            step[key] = text_to_parts(text)


def _put_notes(step: dict[str, Any], notes: str | None, old: dict[str, Any], errors: dict[str, str],
               key: str) -> None:
    """The step's facilitator note (`notes:`, spoken only in rehearsal) from the form, or kept
    from the saved step when the form had no note field (`notes` None)."""
    if notes is None:
        if old.get("notes"):
            step["notes"] = old["notes"]
        return
    if len(notes) > MAX_STEP_TEXT:
        errors[key] = str(_l("this note is %(count)s characters; a note can be at most %(most)s",
                             count=f"{len(notes):,}", most=f"{MAX_STEP_TEXT:,}"))
        return
    if notes.strip():
        step["notes"] = text_to_parts(notes)


_PROBLEM = re.compile(r"^step (\d+) [^,]*, field ([^\s(:]+)(?: \(line \d+\))?: (.*)$", re.DOTALL)
_TOP = re.compile(r"^field ([^\s(:]+)(?: \(line \d+\))?: (.*)$", re.DOTALL)
_FIELD_OF = {
    "say": "text",
    "prompt": "text",
    "id": "id",
    "kind": "kind",
    "title": "title",
    "core": "core",
    "then": "then",
    "between_turns": "between",
    "duration_s": "duration_min",
    "warn_before_s": "warn_min",
    "bell": "bell",
    "count": "bells",
    "notes": "notes",
    "reminder": "reminder",
    "wrap_up": "wrap_up",
}


def _humanise(msg: str) -> str:
    """'warn_s (200) must be less than max_s (120)' in the words of the form's labels (and in
    the reader's language when `msg` is a device Problem)."""
    if isinstance(msg, Problem):
        labelled = {name: f"“{TURN_FIELDS[value][0]}”" if isinstance(value, str) and value in TURN_FIELDS
                    else value for name, value in msg.fields.items()}
        return problem_text(Problem(msg.template, **labelled))
    for key, (label, _default, _k) in TURN_FIELDS.items():
        msg = re.sub(rf"\b{key} \(([\d.]+)\)", lambda m, label=label: f"“{label}” ({m[1]})", msg)
    return msg


def problems_to_fields(
    problems: list[str], form: dict[str, Any]
) -> tuple[dict[str, str], list[str]]:
    """Map ScriptError problems to form field names; what has no field stays general. Each comes
    back in the reader's language (the problems are device.problems.Problem values)."""
    from device.script import located

    def message(problem: str, english: str) -> Any:
        """The problem without its place (step, field, line)."""
        return problem.fields["message"] if isinstance(problem, Problem) and "message" in problem.fields else english

    fields: dict[str, str] = {}
    general: list[str] = []
    for problem in problems:
        match = _PROBLEM.match(problem)
        if match:
            index, where, msg = int(match[1]) - 1, match[2], message(problem, match[3])
            parts = where.split(".")
            if parts[0] == "turns":
                named = [k for k in TURN_FIELDS if re.search(rf"\b{k}\b", msg)]
                name = (
                    parts[1]
                    if len(parts) > 1 and parts[1] in TURN_FIELDS
                    else (named[0] if named else "max_s")
                )
                msg = _humanise(msg)
            elif (
                form["steps"][index : index + 1]
                and form["steps"][index]["kind"] == "bell"
                and parts[0] == "count"
            ):
                name = "bells"
            elif parts[0] == "(the step)" and "warn_before_s" in msg:
                name, msg = "warn_min", gettext("the warning bell must come before the end of the timer")
            elif parts[0] == "(the step)" and re.search(r"text|empty|recording", msg):
                name = "text"
            elif (parts[0] == "between_turns" and form["steps"][index : index + 1]
                  and form["steps"][index]["between"] == SPOKEN
                  and form["steps"][index].get("between_say") is not None):
                name = "between_say"  # the words are wrong, not the choice
            else:
                name = _FIELD_OF.get(parts[0], "")
            if name:
                fields.setdefault(f"s{index}_{name}", problem_text(msg))
            else:
                general.append(gettext("Step %(n)s: %(problem)s", n=index + 1, problem=problem_text(msg)))
            continue
        match = _TOP.match(problem)
        if match and match[1].startswith("messages.") and match[1].split(".")[1] in DEFAULT_MESSAGES:
            fields.setdefault(f"msg_{match[1].split('.')[1]}", problem_text(message(problem, match[2])))
            continue
        if match and match[1] in ("script", "title", "language", "voice"):
            fields.setdefault(match[1], problem_text(message(problem, match[2])))
            continue
        if problem.startswith("field steps") and "at least 1 item" in problem and fields:
            continue  # pydantic's echo of a step problem already shown at its field
        text = re.sub(r"^field \(top level\)(?: \(line \d+\))?: ", "", problem)
        text = re.sub(r" \(line \d+\)", "", text)
        if text.startswith("voice:"):
            fields.setdefault("voice", text.removeprefix("voice:").strip())
        elif isinstance(problem, Problem) and "message" in problem.fields:  # said without its line
            field = problem.fields["field"]
            general.append(problem_text(problem.fields["message"] if field == "(top level)"
                                        else located(problem.fields["message"], field=field)))
        else:
            general.append(problem_text(problem))
    return fields, general
