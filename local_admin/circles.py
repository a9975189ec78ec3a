"""The circle editor: list, create, copy, edit, delete, listen, save (render), versions, files."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)

from device.config import ConfigError
from device.datafolder import DataFolder
from device.fsutil import atomic_write_bytes
from device.script import LoadedScript, ScriptError, parse_script
from local_admin import backends, state, store
from local_admin.i18n import carry_language, error_text, language_in_words, message_label, problem_text
from local_admin.i18n import gettext as _
from local_admin.jobs import release_memory
from local_admin.settings import save_layer

bp = Blueprint("circles", __name__, url_prefix="/circles")

PREVIEW_SET = "_admin-preview"  # not a valid script id, so never mistaken for a circle's set
LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


def _voices() -> list[Any]:
    return state().voices()[0]


def _cache_dir() -> Path:
    return DataFolder(state().data_dir).cache


def _active() -> str | None:
    """The id of the circle the box plays (the same resolver as the runtime)."""
    st = state()
    return store.active_id(st.data_dir, st.config.session.script)


def _render_settings() -> Any:
    from audio.render import RenderSettings

    audio = state().config.audio
    return RenderSettings(sample_rate=audio.sample_rate, loudness_lufs=audio.loudness_lufs)


# -- list


@bp.route("/")
def index():
    st = state()
    circles = store.list_circles(st.data_dir)
    return render_template("circles.html", circles=circles, active=_active(), errors={}, form={})


@bp.route("/new", methods=["GET", "POST"])
def new():
    if request.method == "GET":
        form = {
            "script": "",
            "title": "",
            "language": "en_US",
            "voice": _default_voice(),
            "steps": [store.new_step(0)],
        }
        return _editor(form, is_new=True)
    return _handle_post(None)


def _default_voice() -> str:
    voices = _voices()
    return voices[0].id if voices else ""


@bp.route("/<script_id>/copy", methods=["POST"])
def copy(script_id: str):
    st = state()
    try:
        loaded = store.load(st.data_dir, script_id)
    except ScriptError:
        abort(404)
    new_id = request.form.get("new_id", "").strip()
    errors = {}
    if not new_id:
        errors["new_id"] = _("give the circle a short name, like my-circle")
    elif not store.valid_id(new_id):
        errors["new_id"] = _("use lower-case letters, digits, - and _ (up to 40), like my-circle")
    elif store.find_path(st.data_dir, new_id):
        errors["new_id"] = _("there is already a circle called %(name)s", name=new_id)
    if errors:
        circles = store.list_circles(st.data_dir)
        return render_template(
            "circles.html",
            circles=circles,
            active=_active(),
            errors=errors,
            form={"copy_of": script_id, "new_id": new_id},
        ), 400
    data = store.raw_dict(loaded.text)
    data["script"] = new_id
    data["version"] = 1
    if data.get("title"):
        data["title"] = f"{data['title']} (copy)"[:120]
    form = store.script_to_form(data)
    flash(_("This is a copy of %(name)s. Check it and press Save to keep it.", name=script_id), "info")
    return _editor(form, is_new=True)


@bp.route("/<script_id>/delete", methods=["POST"])
def delete(script_id: str):
    st = state()
    if script_id == _active():
        flash(_("This circle is the one the box runs. Choose another one first."), "error")
    elif request.form.get("confirm") != "yes":
        flash(_("Tick the box to confirm deleting."), "error")
    elif store.delete(st.data_dir, script_id):
        flash(_("Deleted %(name)s. Its earlier versions are kept and can be restored.", name=script_id), "ok")
    else:
        flash(_("Only circles written on this box can be deleted (built-in ones stay)."), "error")
    return redirect(url_for("circles.index"))


@bp.route("/<script_id>/use", methods=["POST"])
def use(script_id: str):
    st = state()
    if store.find_path(st.data_dir, script_id) is None:
        abort(404)
    try:
        save_layer({"session": {"script": script_id}})
    except ConfigError as exc:
        flash(str(exc), "error")
    else:
        flash(_tell_the_box(script_id), "ok")
    return redirect(url_for("circles.index"))


def _tell_the_box(script_id: str) -> str:
    """After session.script is saved: ask the runtime to reload over the control socket, and
    say truthfully when it plays the circle (the words are local_admin.applies')."""
    from local_admin.applies import Change, tell_box

    return tell_box(state().control, Change(script_id))


# -- import / export / history


@bp.route("/import", methods=["POST"])
def import_file():
    st = state()
    upload = request.files.get("file")
    errors: dict[str, str] = {}
    general: list[str] = []
    if upload is None or not upload.filename:
        errors["file"] = _("choose a .yaml circle file")
    else:
        try:
            text = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            errors["file"] = _("this file is not text (UTF-8); export it again as YAML")
        else:
            try:
                loaded = parse_script(text, upload.filename)
            except ScriptError as exc:
                errors["file"] = _("this circle has problems; nothing was saved")
                general = [problem_text(p) for p in exc.problems]
            else:
                voice_problem = _voice_problem(loaded.script.voice)
                if voice_problem:
                    errors["file"] = _("voice: %(why)s", why=voice_problem)
                else:
                    script_id = loaded.script.script
                    version = store.next_version(st.data_dir, script_id)
                    text = store.with_version(text, version)
                    return _start_save(script_id, version, text)
    circles = store.list_circles(st.data_dir)
    return render_template(
        "circles.html",
        circles=circles,
        active=_active(),
        errors=errors,
        form={},
        problems=general,
    ), 400


@bp.route("/<script_id>/export")
def export(script_id: str):
    try:
        loaded = store.load(state().data_dir, script_id)
    except ScriptError:
        abort(404)
    return Response(
        loaded.text,
        mimetype="application/x-yaml",
        headers={"Content-Disposition": f'attachment; filename="{script_id}.yaml"'},
    )


@bp.route("/<script_id>/history")
def history(script_id: str):
    st = state()
    if not store.valid_id(script_id):
        abort(404)
    items = store.history(st.data_dir, script_id)
    current = None
    path = store.find_path(st.data_dir, script_id)
    if path is not None:
        try:
            current = store.load(st.data_dir, script_id).script.version
        except ScriptError:
            current = None
    if not items and path is None:
        abort(404)
    return render_template("history.html", script_id=script_id, items=items, current=current)


@bp.route("/<script_id>/history/<name>")
def history_file(script_id: str, name: str):
    path = store.history_file(state().data_dir, script_id, name)
    if path is None:
        abort(404)
    return Response(path.read_text(encoding="utf-8"), mimetype="text/plain; charset=utf-8")


@bp.route("/<script_id>/restore", methods=["POST"])
def restore(script_id: str):
    st = state()
    path = store.history_file(st.data_dir, script_id, request.form.get("name", ""))
    if path is None:
        abort(404)
    text = path.read_text(encoding="utf-8")
    try:
        parse_script(text, path.name)
    except ScriptError as exc:
        flash(_("That version cannot be used any more: %(why)s",
                why="; ".join(problem_text(p) for p in exc.problems)), "error")
        return redirect(url_for("circles.history", script_id=script_id))
    version = store.next_version(st.data_dir, script_id)
    return _start_save(script_id, version, store.with_version(text, version))


# -- editor


@bp.route("/<script_id>/edit", methods=["GET", "POST"])
def edit(script_id: str):
    st = state()
    source = store.resolve(st.data_dir, script_id)
    if source is not None and not source.editable:
        flash(_("%(name)s was installed by a content bundle and is not changed on the box: "
                "copy it (under “Copy or delete”) and edit the copy.", name=script_id), "error")
        return redirect(url_for("circles.index"))
    if request.method == "POST":
        return _handle_post(script_id)
    draft = store.draft_path(st.data_dir, script_id)
    note = None
    if draft.exists() and st.renders.active_for(script_id) is None:
        text = draft.read_text(encoding="utf-8")
        note = _(
            "These changes are not on the box yet: recorded in the studio, or a save whose "
            "rendering failed. Save them, or discard them."
        )
    else:
        path = store.find_path(st.data_dir, script_id)
        if path is None:
            abort(404)
        text = path.read_text(encoding="utf-8")  # shown as is: Check or Save names any problem
    form = store.script_to_form(store.raw_dict(text))
    return _editor(form, is_new=False, draft_note=note)


@bp.route("/<script_id>/discard-draft", methods=["POST"])
def discard_draft(script_id: str):
    if store.valid_id(script_id):
        store.draft_path(state().data_dir, script_id).unlink(missing_ok=True)
    return redirect(url_for("circles.edit", script_id=script_id))


def _editor(
    form: dict,
    *,
    is_new: bool,
    errors: dict | None = None,
    general: list | None = None,
    listen: dict | None = None,
    draft_note: str | None = None,
    status: int = 200,
    focus: int | None = None,
):
    from device.script import DEFAULT_MESSAGES

    st = state()
    job = st.renders.active_for(form["script"]) if form.get("script") else None
    if form.get("messages") is None:
        form["messages"] = {name: "" for name in DEFAULT_MESSAGES}
    english = form.get("language", "").startswith("en")
    messages = [{"name": name, "label": message_label(name), "default": text if english else ""}
                for name, text in DEFAULT_MESSAGES.items()]
    labels = {f"msg_{m['name']}": m["label"] for m in messages}
    labels.update(msg_label_extra(form))
    return render_template(
        "editor.html",
        messages=messages,
        messages_open=(not english or any(form["messages"].values())
                       or any(k.startswith("msg_") for k in errors or {})),
        field_labels=labels,
        circle_language=language_in_words(form.get("language")),
        voice_note=_voice_note(form),
        form=form,
        is_new=is_new,
        errors={field: problem_text(problem) for field, problem in (errors or {}).items()},
        general=[problem_text(problem) for problem in general or ()],
        kinds=store.KINDS,
        sound_words=store.SOUND_WORDS,
        bells=store.BELLS,
        between=store.BETWEEN,
        spoken=store.SPOKEN,
        turn_fields=store.TURN_FIELDS,
        voices=_voices(),
        listen=listen or {},
        draft_note=draft_note,
        job=job,
        active=_active(),
        focus=focus,
    ), status


def msg_label_extra(form: dict) -> dict[str, str]:
    """Labels of the editor's top-level fields and a round's extra prompts, for the problem list."""
    out = {"script": _("Short name"), "title": _("Title"), "language": _("Language"), "voice": _("Voice")}
    for index, step in enumerate(form.get("steps", ())):
        number, step_id = index + 1, step.get("id", "")
        out[f"s{index}_between"] = _("Step %(n)s '%(id)s': between turns", n=number, id=step_id)
        out[f"s{index}_between_say"] = _("Step %(n)s '%(id)s': words between turns", n=number, id=step_id)
        out[f"s{index}_reminder"] = _("Step %(n)s '%(id)s': gentle reminder", n=number, id=step_id)
        out[f"s{index}_wrap_up"] = _("Step %(n)s '%(id)s': wrap-up", n=number, id=step_id)
        out[f"s{index}_notes"] = _("Step %(n)s '%(id)s': facilitator note", n=number, id=step_id)
    return out


def _voice_note(form: dict) -> str | None:
    """device.language.voice_note in the reader's words."""
    from device.language import voice_note

    voice, circle = form.get("voice"), form.get("language", "")
    return problem_text(voice_note(voice, _voice_language(voice), circle))


def _voice_language(voice: str | None) -> str | None:
    """The language the voice declares (its .onnx.json), None when it is not on the box."""
    return next((v.language for v in _voices() if v.id == voice), None) if voice else None


def prompt_problems(script: Any, pending: Collection[str] = ()) -> list[Any]:
    """device.language's problems for this circle on this box (its voices, its recordings);
    `pending`: recordings just uploaded, which count as present."""
    from device.language import check_prompts

    rec_dir = store.recordings_dir(state().data_dir)
    return check_prompts(script, voice_language=_voice_language(script.voice),
                         recording_exists=lambda name: name in pending or (rec_dir / name).is_file())


def _voice_problem(voice: str | None) -> str | None:
    if not voice:
        return None
    ids = [v.id for v in _voices()]
    if voice not in ids:
        return _("unknown voice '%(voice)s'; this box has: %(voices)s", voice=voice,
                 voices=", ".join(ids) or _("no voices"))
    return None


def _build(form: dict, is_new: bool, script_id: str | None,
           words: dict[str, str] | None = None) -> tuple[dict, dict, list, int, dict]:
    """Form -> (script dict, field errors, general problems, version, base dict). The base is
    the circle's working copy (its draft, else the live file); `words`: of new recordings."""
    st = state()
    errors: dict[str, str] = {}
    target = form["script"] if is_new else script_id
    base: dict = {}
    if not is_new and script_id:
        base = store.raw_dict(store.working_text(st.data_dir, script_id) or "")
        form["script"] = script_id
    if is_new:
        if not form["script"]:
            errors["script"] = _("give the circle a short name, like my-circle")
        elif not store.valid_id(form["script"]):
            errors["script"] = _("use lower-case letters, digits, - and _ (up to 40), like my-circle")
        elif store.find_path(st.data_dir, form["script"]):
            errors["script"] = _("there is already a circle called %(name)s; choose another name",
                                 name=form["script"])
    if not LANGUAGE.match(form["language"]):
        errors["language"] = _("a language code like en_US, sw or ko_KR")
    problem = _voice_problem(form["voice"])
    if problem:
        errors["voice"] = problem
    version = store.next_version(st.data_dir, target) if store.valid_id(target or "") else 1
    if is_new and not errors:  # a new circle already recorded in the studio (its draft)
        base = store.raw_dict(store.working_text(st.data_dir, form["script"]) or "")
    data = store.form_to_script(form, base, version, errors, words)
    return data, errors, [], version, base


def _validate(
    data: dict, form: dict, errors: dict, pending: Collection[str] = (), *, prompts: bool = True
) -> tuple[LoadedScript | None, list[str]]:
    """The circle the form describes, or None with the problems; `pending`: recordings just
    uploaded, which count as present although they are written only if the form is taken.
    `prompts`: also name each prompt that is missing a recording or would be spoken in another
    language (device.language), at its field."""
    text = store.dump_yaml(data)
    try:
        loaded = parse_script(text, data.get("script") or "circle")
    except ScriptError as exc:
        fields, general = store.problems_to_fields(exc.problems, form)
        for key, msg in fields.items():
            errors.setdefault(key, msg)
        return None, general
    if not prompts:
        return loaded, []
    found = prompt_problems(loaded.script, pending)
    for problem in found:
        errors.setdefault(_editor_field(problem.prompt.field), problem.problem)
    return (None if found else loaded), []


def _editor_field(field: str) -> str:
    """The editor's field for a prompt (device.language names the between-turns prompt
    `s<i>_between`, the choice; its words have their own field)."""
    return field + "_say" if re.fullmatch(r"s\d+_between", field) else field


def _handle_post(script_id: str | None):
    is_new = script_id is None
    form = store.form_from_request(request.form)
    if not is_new:
        form["script"] = script_id
    op = request.form.get("op", "check")
    errors: dict[str, str] = {}
    pending = _take_uploads(form, errors)
    # Structure edits: no validation, just the changed form back (works without JavaScript).
    kind_match = re.match(r"^(add|del|up|down|listen):?(\d*)$", op)
    if kind_match and kind_match[1] != "listen":
        action, index = kind_match[1], int(kind_match[2] or -1)
        steps = form["steps"]
        focus = index if action in ("up", "down") else None
        if action == "add":
            kind = request.form.get("new_kind", "say")
            taken = {s["id"] for s in steps}
            steps.append(store.new_step(len(steps), kind if kind in store.KINDS else "say", taken))
            focus = len(steps) - 1
        elif 0 <= index < len(steps):
            if action == "del":
                steps.pop(index)
            elif action == "up" and index > 0:
                steps[index - 1], steps[index] = steps[index], steps[index - 1]
                focus = index - 1
            elif action == "down" and index < len(steps) - 1:
                steps[index + 1], steps[index] = steps[index], steps[index + 1]
                focus = index + 1
        _keep(pending)  # an edit of the form's shape, not a refusal: the steps show them
        return _editor(form, is_new=is_new, errors=errors, focus=focus)
    if kind_match and kind_match[1] == "listen":
        index = int(kind_match[2] or 0)
        _keep(pending)  # the preview plays it
        url, problem = _preview(form, index, errors)
        listen = {"index": index, "url": url, "error": problem}
        return _editor(
            form, is_new=is_new, errors=errors, listen=listen, status=200 if url else 400
        )
    words = {name: up.words for name, up in pending.items() if up.words}
    data, build_errors, _general, version, _base = _build(form, is_new, script_id, words)
    errors.update(build_errors)
    loaded, general = _validate(data, form, errors, pending, prompts=False)
    if errors or general or loaded is None:
        _drop(pending, form, errors)  # a refused form writes nothing
        return _editor(form, is_new=is_new, errors=errors, general=general, status=400)
    _keep(pending)  # well formed: its recordings are good, whatever else is missing
    if op == "studio":  # record the prompts: the studio works on the circle's draft
        store.write_draft(state().data_dir, loaded.script.script, loaded.text)
        return redirect(url_for("studio.studio", script_id=loaded.script.script))
    for problem in prompt_problems(loaded.script):
        errors.setdefault(_editor_field(problem.prompt.field), problem.problem)
    if errors:
        return _editor(form, is_new=is_new, errors=errors, status=400)
    if op == "check":
        flash(_("No problems found. Press Save to keep it and make it ready for the box."), "ok")
        return _editor(form, is_new=is_new)
    return _start_save(loaded.script.script, version, loaded.text)


@dataclass
class _Upload:
    """A recording uploaded for a step, checked and converted, not yet written."""

    index: int  # the step's, or -1 for a box message
    wav: bytes
    text_before: str
    message: str | None = None

    @property
    def words(self) -> str | None:
        """The text it replaced, when that was plain words (kept as the recording's words)."""
        text = " ".join(self.text_before.split())
        return text if text and "[" not in text else None


def _take_uploads(form: dict, errors: dict) -> dict[str, _Upload]:
    """A recording uploaded for a step (or a box message) replaces its text with that
    recording. Each is checked and converted now, but written only once the form is taken
    (`_keep`)."""
    pending: dict[str, _Upload] = {}
    slots: list[tuple[str, Any, str]] = [
        (f"s{index}", index, step["id"] or f"step{index + 1}") for index, step in enumerate(form["steps"])]
    if form.get("messages") is not None:
        slots += [(f"msg_{name}", name, f"msg-{name}") for name in form["messages"]]
    for key, slot, prompt_name in slots:
        upload = request.files.get(f"{key}_recording")
        if upload is None or not upload.filename:
            continue
        try:
            name, wav = prepare_recording(upload.read(), upload.filename, form["script"] or "circle", prompt_name)
        except ValueError as exc:
            errors[f"{key}_recording"] = error_text(exc)
            continue
        if isinstance(slot, int):
            pending[name] = _Upload(slot, wav, form["steps"][slot]["text"])
            form["steps"][slot]["text"] = f"[recording {name}]"
        else:
            pending[name] = _Upload(-1, wav, form["messages"][slot], message=slot)
            form["messages"][slot] = f"[recording {name}]"
    return pending


def _keep(pending: dict[str, _Upload]) -> None:
    for name, upload in pending.items():
        atomic_write_bytes(store.recordings_dir(state().data_dir) / name, upload.wav)


def _drop(pending: dict[str, _Upload], form: dict, errors: dict) -> None:
    """The form was refused: its recordings are not kept; the steps get their text back."""
    for upload in pending.values():
        if upload.message is not None:
            form["messages"][upload.message] = upload.text_before
            key = f"msg_{upload.message}_recording"
        else:
            form["steps"][upload.index]["text"] = upload.text_before
            key = f"s{upload.index}_recording"
        errors.setdefault(
            key,
            _("this recording was not kept because the circle has problems; "
              "fix them, then choose the file again"),
        )


def prepare_recording(data: bytes, filename: str, script_id: str, step_id: str) -> tuple[str, bytes]:
    """Check, trim and normalise an uploaded recording (audio.takes): (its name, WAV bytes).
    Raises ValueError (audio.takes.TakeError) saying what is wrong and what to do."""
    from local_admin.takes import make_ready

    take = make_ready(data, filename)
    return recording_name(script_id, step_id, take.digest), take.wav


def recording_name(script_id: str, step_id: str, digest: str) -> str:
    """A circle's recording's file name: the circle, the prompt, and the take's own hash."""
    safe_step = re.sub(r"[^a-z0-9_-]", "-", step_id.lower())[:40] or "step"
    safe_script = re.sub(r"[^a-z0-9_-]", "-", script_id.lower())[:40] or "circle"
    return f"{safe_script}-{safe_step}-{digest[:10]}.wav"


# -- listen


def _preview(form: dict, index: int, errors: dict) -> tuple[str | None, str | None]:
    """Render one step's main prompt into the cache; returns (URL of the WAV, problem)."""
    if not 0 <= index < len(form["steps"]):
        return None, _("no such step")
    step = form["steps"][index]
    if step["kind"] == "bell":
        return None, _("a bell step has no words to listen to")
    problem = _voice_problem(form["voice"])
    if problem:
        errors["voice"] = problem
        return None, problem
    number_errors: dict[str, str] = {}
    one = dict(form, steps=[step], messages=None)
    data = store.form_to_script(one, {}, 1, number_errors)
    data["script"] = "preview"
    try:
        loaded = parse_script(store.dump_yaml(data), "preview")
    except ScriptError as exc:
        fields, general = store.problems_to_fields(exc.problems, one)
        for key, msg in fields.items():
            errors.setdefault(key.replace("s0_", f"s{index}_", 1), msg)
        return None, "; ".join(general) or _("fix the marked field first")
    parts = loaded.script.prompts().get(f"step:{step['id']}")
    if not parts:
        return None, _("this step has nothing to say yet")
    wrong = [p for p in prompt_problems(loaded.script) if p.prompt.prompt_id == f"step:{step['id']}"]
    if wrong:  # never synthesized in another language, nor without a voice (device.language)
        errors[f"s{index}_text"] = wrong[0].problem
        return None, problem_text(wrong[0].problem)
    from audio.render import RenderError, render_prompt_set
    from audio.voices import VoiceNotFound

    st = state()
    try:
        with st.preview_lock:  # one Piper at a time; the manifest is read right after writing
            result = render_prompt_set(
                PREVIEW_SET,
                {"preview": parts},
                loaded.script.voice,
                _cache_dir(),
                voices_dir=st.config.voice_dirs,
                recordings_dir=store.recordings_dir(st.data_dir),
                settings=_render_settings(),
            )
            manifest = json.loads(result.manifest_path.read_text(encoding="utf-8"))
            del result
            release_memory()
    except (RenderError, VoiceNotFound, ValueError, OSError) as exc:
        return None, _("could not make the sound: %(why)s", why=error_text(exc))
    key = manifest["prompts"]["preview"]["key"]
    return url_for("circles.audio", key=key), None


@bp.route("/<script_id>/listen.json", methods=["POST"])
@bp.route("/new/listen.json", methods=["POST"], defaults={"script_id": None})
def listen_json(script_id: str | None):
    form = store.form_from_request(request.form)
    if script_id:
        form["script"] = script_id
    errors: dict[str, str] = {}
    try:
        index = int(request.args.get("step", request.form.get("step", "0")))
    except ValueError:
        index = -1
    _take_uploads(form, errors)
    url, problem = _preview(form, index, errors)
    if url is None:
        return jsonify(error=problem, fields=errors), 400
    return jsonify(url=url)


@bp.route("/audio/<key>.wav")
def audio(key: str):
    if not re.fullmatch(r"[0-9a-f]{16,128}", key):
        abort(404)
    from audio.cache import PromptCache

    path = PromptCache(_cache_dir()).wav_path(key)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="audio/wav", conditional=True, max_age=3600)


@bp.route("/recordings/<name>")
def recording(name: str):
    if not re.fullmatch(r"[a-z0-9_-]+\.wav", name):
        abort(404)
    path = store.recordings_dir(state().data_dir) / name
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype="audio/wav", conditional=True)


# -- save: render in the background, then switch ---------------------------------------------------


def _start_save(script_id: str, version: int, text: str):
    st = state()
    data_dir = st.data_dir
    running = st.renders.active_for(script_id)
    if running is not None:  # one save at a time per circle, so versions never collide
        flash(_("This circle is still being saved. Wait for it to finish, then save again."), "error")
        return redirect(url_for("circles.job", job_id=running.id))
    store.write_draft(data_dir, script_id, text)  # kept if rendering fails: nothing is lost
    live_path = DataFolder(data_dir).script(script_id)
    loaded = parse_script(text, str(live_path), live_path)

    if (
        getattr(st.render_script, "__name__", "") == "_real_render_script"
        and not backends.render_available()
    ):
        store.activate(data_dir, script_id, text)
        flash(
            _("Saved version %(version)s. The renderer is not installed here, so the prompts "
              "were not rendered.", version=version),
            "error",
        )
        return redirect(url_for("circles.edit", script_id=script_id))

    settings = _render_settings()
    cache_dir = _cache_dir()
    voices_dir = st.config.voice_dirs
    render_script = st.render_script
    control = st.control  # the job runs on its own thread, outside the request
    configured = st.config.session.script  # which circle the box runs, asked once it is live
    in_language = carry_language()  # its messages in the language of the page that saved

    def work(job):
        with in_language():
            return _work(job)

    def _work(job):
        def progress(done: int, total: int, prompt_id: str, reused: bool) -> None:
            job.total, job.done, job.current = total, done, prompt_id
            job.reused += 1 if reused else 0

        job.total = len(loaded.script.prompts())
        result = render_script(
            loaded, cache_dir, voices_dir=voices_dir, settings=settings, progress=progress
        )
        store.activate(data_dir, script_id, text)
        ready = _("Version %(version)s is ready: %(rendered)s prompts rendered, %(reused)s reused.",
                  version=version, rendered=len(result.rendered), reused=len(result.reused))
        if store.active_id(data_dir, configured) != script_id:
            return ready + " " + _('Press "Use on the box" on the Circles page to play it.')
        from local_admin.applies import Change, tell_box

        return f"{ready} {tell_box(control, Change(_('version %(version)s', version=version)))}"

    job = st.renders.submit(script_id, version, work)
    return redirect(url_for("circles.job", job_id=job.id))


@bp.route("/jobs/<job_id>")
def job(job_id: str):
    item = state().renders.get(job_id)
    if item is None:
        abort(404)
    return render_template("job.html", job=item)


@bp.route("/jobs/<job_id>.json")
def job_json(job_id: str):
    item = state().renders.get(job_id)
    if item is None:
        return jsonify(error=_("no such job")), 404
    data = item.as_dict()
    data["message"] = problem_text(item.message)  # a renderer's refusal, in the reader's language
    data["edit_url"] = url_for("circles.edit", script_id=item.script)
    return jsonify(data)
