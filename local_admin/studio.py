"""The recording studio: every prompt of a circle, recorded from a phone, one at a time.

For each prompt (steps, round prompts, between-turn phrases, the box's own messages) the page
says whether it is recorded, synthesized or missing (device.language's rule), and lets the
therapist record it (`<input type=file accept=audio/* capture>` opens the phone's recorder even
over plain http; admin.js adds in-page recording where the browser allows the microphone),
listen, record again, or delete the take. Takes are trimmed, checked and normalised
(audio.takes). The studio works on the circle's draft (`DataFolder.draft`), so nothing reaches
the box until Save, which renders and switches like the editor's Save.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from device.fsutil import atomic_write_bytes
from device.language import PromptInfo, prompt_infos
from device.script import DEFAULT_MESSAGES, Recording, Script, ScriptError, parse_script
from local_admin import state, store
from local_admin.i18n import error_text, language_in_words, problem_text, prompt_label, prompt_problem_text
from local_admin.i18n import gettext as _
from local_admin.i18n import lazy_gettext as _l

bp = Blueprint("studio", __name__, url_prefix="/circles/<script_id>/studio")

RECORDED, SYNTHESIZED, MISSING = "recorded", "synthesized", "missing"
STATUS_WORDS = {RECORDED: _l("Recorded"), SYNTHESIZED: _l("Spoken by the voice"), MISSING: _l("Needs a recording")}


@dataclass
class PromptRow:
    """One prompt as the studio shows it."""

    info: PromptInfo
    status: str
    words: str  # what to read aloud while recording
    recording: str | None  # the take's file name, when recorded
    problem: str | None

    @property
    def anchor(self) -> str:
        return "p-" + self.info.prompt_id.replace(":", "-").replace("_", "-")


def _working(script_id: str) -> tuple[str, Any]:
    """The circle's working text and its parsed form; 404 when there is no such circle."""
    if not store.valid_id(script_id):
        abort(404)
    text = store.working_text(state().data_dir, script_id)
    if text is None:
        abort(404)
    return text, parse_script(text, script_id)


def _words(parts: tuple, info: PromptInfo, script: Script) -> str:
    if info.built_in and not script.language.startswith("en"):
        return ""  # the box's English: the therapist says it in the circle's language
    chunks = []
    for part in parts:
        if isinstance(part, str):
            chunks.append(part)
        elif isinstance(part, Recording) and part.text:
            chunks.append(part.text)
    return " ".join(chunks)


def rows(script: Script) -> list[PromptRow]:
    """Every prompt in the order the box plays them, with its status."""
    from local_admin.circles import prompt_problems

    problems = {p.prompt.prompt_id: problem_text(p.problem) for p in prompt_problems(script)}
    prompts = script.prompts()
    out = []
    for info in prompt_infos(script):
        parts = prompts[info.prompt_id]
        takes = [p for p in parts if isinstance(p, Recording)]
        problem = problems.get(info.prompt_id)
        if problem:
            status = MISSING
        elif takes and not any(isinstance(p, str) for p in parts):
            status = RECORDED
        else:
            status = SYNTHESIZED
        out.append(PromptRow(info, status, _words(parts, info, script), takes[0].audio if takes else None,
                             problem))
    return out


@bp.route("/")
def studio(script_id: str):
    try:
        _text, loaded = _working(script_id)
    except ScriptError as exc:
        flash(_("This circle has problems to fix in the editor first: %(problems)s", problems="; ".join(
            problem_text(p) for p in exc.problems)),
              "error")
        return redirect(url_for("circles.edit", script_id=script_id))
    script = loaded.script
    listed = rows(script)
    missing = sum(1 for r in listed if r.status == MISSING)
    draft = store.draft_path(state().data_dir, script_id).exists()
    return render_template("studio.html", script=script, rows=listed, missing=missing, draft=draft,
                           status_words=STATUS_WORDS, language=language_in_words(script.language))


def _locate(data: dict, prompt_id: str) -> tuple[dict, str]:
    """(the dict, its key) that hold a prompt's parts in the circle's YAML."""
    kind, _, rest = prompt_id.partition(":")
    if kind == "msg" and rest in DEFAULT_MESSAGES:
        if not isinstance(data.get("messages"), dict):
            data["messages"] = {}
        return data["messages"], rest
    if kind == "step":
        step_id, _, suffix = rest.partition(":")
        for step in data.get("steps") or []:
            if isinstance(step, dict) and step.get("id") == step_id:
                if suffix == "between" and isinstance(step.get("between_turns"), dict):
                    return step["between_turns"], "say"
                if suffix in ("reminder", "wrap_up"):
                    return step, suffix
                if not suffix:
                    return step, "prompt" if step.get("kind") == "round" else "say"
    abort(404)


def _set_parts(script_id: str, prompt_id: str, parts: Any) -> None:
    """Change one prompt in the circle's draft (None removes it: a box message goes back to
    the box's own words)."""
    text, _loaded = _working(script_id)
    data = store.raw_dict(text)
    holder, key = _locate(data, prompt_id)
    if parts is None:
        holder.pop(key, None)
        if not data.get("messages"):
            data.pop("messages", None)
    else:
        holder[key] = parts
    new_text = store.dump_yaml(data)
    parse_script(new_text, script_id)  # never write a draft the box could not read
    store.write_draft(state().data_dir, script_id, new_text)


def _row(script_id: str, prompt_id: str) -> PromptRow:
    _text, loaded = _working(script_id)
    for row in rows(loaded.script):
        if row.info.prompt_id == prompt_id:
            return row
    abort(404)


@bp.route("/take", methods=["POST"])
def take(script_id: str):
    """A take for one prompt: checked, trimmed, normalised, then it replaces the prompt."""
    from local_admin.circles import recording_name
    from local_admin.takes import uploaded_take

    prompt_id = request.form.get("prompt", "")
    row = _row(script_id, prompt_id)
    words = " ".join(request.form.get("words", "").split())[:4000]
    back = url_for("studio.studio", script_id=script_id) + f"#{row.anchor}"
    ready = uploaded_take(prompt_label(row.info))
    if ready is None:
        return redirect(back)
    name = recording_name(script_id, prompt_id.replace(":", "-"), ready.digest)
    atomic_write_bytes(store.recordings_dir(state().data_dir) / name, ready.wav)
    part: dict[str, Any] = {"audio": name}
    if words or row.words:
        part["text"] = words or row.words
    _set_parts(script_id, prompt_id, part)
    flash(_("%(prompt)s: recorded. Listen to it below.", prompt=prompt_label(row.info)), "ok")
    return redirect(back)


@bp.route("/delete", methods=["POST"])
def delete(script_id: str):
    """The take goes; the prompt gets its words back (a box message: the box's own words)."""
    prompt_id = request.form.get("prompt", "")
    row = _row(script_id, prompt_id)
    if row.recording is None:
        abort(404)
    if row.info.prompt_id.startswith("msg:") and not row.words:
        _set_parts(script_id, prompt_id, None)
    else:
        _set_parts(script_id, prompt_id, row.words or None)
    flash(_("%(prompt)s: the recording was deleted.", prompt=prompt_label(row.info)), "ok")
    return redirect(url_for("studio.studio", script_id=script_id) + f"#{row.anchor}")


@bp.route("/save", methods=["POST"])
def save(script_id: str):
    """Render the working copy and put it on the box (the editor's Save, from the draft)."""
    from local_admin.circles import _start_save, prompt_problems

    text, loaded = _working(script_id)
    problems = prompt_problems(loaded.script)
    if problems:
        flash(_("%(count)s prompts are not ready yet: %(which)s", count=len(problems),
                which="; ".join(prompt_problem_text(p) for p in problems[:3])
                + (" …" if len(problems) > 3 else "")), "error")
        return redirect(url_for("studio.studio", script_id=script_id))
    version = store.next_version(state().data_dir, script_id)
    return _start_save(script_id, version, store.with_version(text, version))


@bp.route("/listen/<prompt_id>")
def listen(script_id: str, prompt_id: str):
    """One prompt as the box would say it: the take itself, or the voice's rendering."""
    row = _row(script_id, prompt_id)
    if row.status == RECORDED and row.recording:
        return redirect(url_for("circles.recording", name=row.recording))
    if row.status == MISSING:
        abort(404)
    _text, loaded = _working(script_id)
    parts = loaded.script.prompts()[prompt_id]
    url, problem = _render_one(loaded.script, parts)
    if url is None:
        abort(400, description=problem)
    return redirect(url)


def _render_one(script: Script, parts: tuple) -> tuple[str | None, str | None]:
    import json

    from audio.render import RenderError, render_prompt_set
    from audio.voices import VoiceNotFound
    from local_admin.circles import PREVIEW_SET, _cache_dir, _render_settings

    st = state()
    try:
        with st.preview_lock:
            result = render_prompt_set(PREVIEW_SET, {"preview": parts}, script.voice, _cache_dir(),
                                       voices_dir=st.config.voice_dirs,
                                       recordings_dir=store.recordings_dir(st.data_dir),
                                       settings=_render_settings())
            manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
    except (RenderError, VoiceNotFound, ValueError, OSError) as exc:
        return None, _("could not make the sound: %(why)s", why=error_text(exc))
    return url_for("circles.audio", key=manifest["prompts"]["preview"]["key"]), None


__all__ = ["MISSING", "RECORDED", "SYNTHESIZED", "bp", "rows"]
