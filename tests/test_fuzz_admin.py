"""Hostile admin forms (hypothesis) through the Flask test client, logged in with a valid CSRF
token: the editor's step form, every settings section, the import of a circle file, the
recording upload, login and first-time setup. Random strings and Unicode, huge and negative
numbers, missing and repeated fields, random files.

The property, for every request: never a 5xx; a refusal is a 4xx whose page shows the message at
a field (`field-error`) or in the problems list; and on a refusal nothing already saved changes
(every file in the data dir byte for byte; a refused editor form may leave only a recording it
accepted, a refused login or setup nothing at all).
"""

from __future__ import annotations

import hashlib
import io
import re
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml
from fuzzing import fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st
from test_admin_support import FakeRender, make_app, ready_client, token

from device.script import packaged_scripts_dir
from local_admin.backends import dhis2_measures

FUZZ = fuzz_settings(25)
VOICE = "en_US-joe-medium"

weird = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "-1e309", "-0", "0x10", "1,5", "", " 3 ", "1_000", "٣"]),
)
words = st.sampled_from(["on", "off", "next", "skip", "goto:share", "goto:", "help", "monthly", "weekly",
                         "en", "ko", "clinic-north", "10.0.0.1", "::1", "a = next", "next step = next",
                         "round", "timer", "bell", "say", "exercise", "continue", "wait_for_next",
                         "spoken", "soft_bell", VOICE, "en_US", "[pause 4]", "[recording x.wav]",
                         "[pause -1]", "[pause 1e400]", "step-1", "welcome"])
value = st.one_of(weird, numbers, words)


def field_values(draw, keys: list[str]) -> list[tuple[str, str]]:
    """Each key missing, once or repeated, with random values (a MultiDict's items)."""
    items = []
    for key in keys:
        repeat = draw(st.sampled_from([1, 1, 1, 1, 0, 2]))
        items += [(key, draw(value)) for _ in range(repeat)]
    return items


# -- the app, with a circle and settings already saved ---------------------------------------------


class Admin:
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.data = Path(self._tmp.name) / "data"
        self.app = make_app(self.data, render=FakeRender())
        self.client = ready_client(self.app, self.data)
        self.tokens: dict[str, str] = {}
        # something saved to lose: a circle of the box's own (two versions) and settings
        text = (packaged_scripts_dir() / "three-step-circle.yaml").read_text(encoding="utf-8")
        for _ in range(2):
            response = self.post_files("/circles/import", {"file": (io.BytesIO(text.encode()), "c.yaml")},
                                       form_path="/circles/")
            assert response.status_code == 302, response.get_data(as_text=True)[:2000]
            self.idle()
        response = self.post("/settings/", [("section", "box"), ("box_name", "clinic-north"),
                                            ("box_site", "Ward 3"), ("volume", "60"), ("volume_cap", "90")])
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]

    def token(self, path: str) -> str:
        if path not in self.tokens:  # the token belongs to the session: one per page is enough
            self.tokens[path] = token(self.client, path)
        return self.tokens[path]

    def post(self, path: str, items: list[tuple[str, str]], form_path: str | None = None):
        from werkzeug.datastructures import MultiDict

        data = MultiDict([("csrf_token", self.token(form_path or path)), *items])
        return self.client.post(path, data=data)

    def post_files(self, path: str, data: dict, form_path: str | None = None):
        return self.client.post(path, data={"csrf_token": self.token(form_path or path), **data},
                                content_type="multipart/form-data")

    def idle(self) -> None:
        assert self.app.extensions["circlebox"].renders.wait_idle(30)

    def snapshot(self) -> dict[str, str]:
        self.idle()
        return {p.relative_to(self.data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.data.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def admin():
    return Admin()


def check(admin: Admin, before: dict[str, str], response, *, new_ok: tuple[str, ...] = ()) -> None:
    """The property: no 5xx; a refusal is a 4xx with a message; a refusal changes nothing saved."""
    body = response.get_data(as_text=True)
    assert response.status_code < 500, body[:3000]
    if response.status_code >= 400:
        assert 400 <= response.status_code < 500
        assert re.search(r'class="(field-error|problems)"', body) or response.status_code in (413, 429), body[:3000]
        after = admin.snapshot()
        changed = [k for k in before if after.get(k) != before[k]]
        added = [k for k in after if k not in before and not k.startswith(new_ok or ("\0",))]
        assert changed == [] and added == [], (changed, added)


# -- the editor's step form ------------------------------------------------------------------------

STEP_FIELDS = ["orig", "id", "kind", "title", "text", "core", "then", "between", "duration_min", "warn_min",
               "bell", "bells", "count", "end_on_silence_s", "pass_on_silence_s", "warn_s", "max_s",
               "notes", "between_say", "reminder", "wrap_up"]


@st.composite
def editor_forms(draw):
    nsteps = draw(st.one_of(st.integers(0, 4).map(str), numbers, weird))
    items = [("op", draw(st.one_of(st.sampled_from(["check", "save", "add", "del:0", "up:1", "down:0", "del:9",
                                                    "up:-1", "add:", "check"]), weird)))]
    items += [("nsteps", nsteps)]
    items += field_values(draw, ["script", "title", "language", "voice", "new_kind"])
    count = draw(st.integers(0, 4))
    for i in range(count):
        items += field_values(draw, [f"s{i}_{name}" for name in STEP_FIELDS])
    if draw(st.booleans()):  # sometimes mostly sane, so validation goes deeper than the first field
        items = [(k, v) for k, v in items if k not in ("language", "voice")]
        items += [("language", "en_US"), ("voice", VOICE)]
    return items


@FUZZ
@given(items=editor_forms(), new=st.booleans())
@example(items=[("op", "check"), ("nsteps", "1"), ("language", "en_US"), ("voice", VOICE), ("s0_id", "x"),
                ("s0_kind", "timer"), ("s0_duration_min", "1e308"), ("s0_text", "")], new=False)
@example(items=[("op", "check"), ("nsteps", "1"), ("language", "en_US"), ("voice", VOICE), ("s0_id", "x"),
                ("s0_kind", "round"), ("s0_text", "Share."), ("s0_max_s", "-1e40"), ("s0_warn_s", "nan")],
         new=False)
def test_the_editor_form_never_crashes_and_a_refusal_saves_nothing(admin, items, new):
    path = "/circles/new" if new else "/circles/three-step-circle/edit"
    before = admin.snapshot()
    response = admin.post(path, items, form_path="/circles/new")
    check(admin, before, response)


# -- the recording upload (in the editor form) -----------------------------------------------------


def wav_bytes(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype=subtype)
    return out.getvalue()


@st.composite
def recordings(draw):
    kind = draw(st.sampled_from(["random", "wav", "wav-cut", "pcm16-header"]))
    if kind == "random":
        return draw(st.binary(max_size=2000))
    rate = draw(st.sampled_from([1, 8, 800, 8000, 22050, 48000, 192000, 384000]))
    n = draw(st.integers(0, 3000))
    fill = draw(st.sampled_from([0.0, 1e-6, 0.5, 1e30, float("nan"), float("inf"), "noise"]))
    samples = (np.random.default_rng(n).standard_normal(n) * 0.3 if fill == "noise"
               else np.full(n, fill, dtype=np.float64))
    if kind == "pcm16-header":  # a header that claims more than is there
        with io.BytesIO() as out:
            with wave.open(out, "wb") as w:
                w.setnchannels(draw(st.integers(1, 4)))
                w.setsampwidth(2)
                w.setframerate(max(rate, 1))
                w.writeframes(draw(st.binary(max_size=400)))
            return out.getvalue()
    data = wav_bytes(samples.astype(np.float32), rate, draw(st.sampled_from(["FLOAT", "DOUBLE", "PCM_16"])))
    return data[: draw(st.integers(0, len(data)))] if kind == "wav-cut" else data


def _not_sound(data: bytes) -> bool:
    """Decodes, but holds NaN or infinity (a float WAV can): must never be kept as a recording."""
    import soundfile

    try:
        samples, _rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
    except Exception:
        return False
    return samples.size > 0 and not np.all(np.isfinite(samples))


INF_WAV = wav_bytes(np.full(3000, np.inf, dtype=np.float32), 8000, "FLOAT")


@FUZZ
@given(data=recordings(), name=st.one_of(st.sampled_from(["a.wav", "b.mp3", "c.ogg", "d.flac", "e.WAV", "x.txt",
                                                         ".wav", "ü.wav"]), weird))
@example(data=INF_WAV, name="a.wav")  # found: accepted, normalised to NaN and kept as garbage PCM
@example(data=wav_bytes(np.r_[np.random.default_rng(1).standard_normal(8000) * 0.3, np.nan].astype(np.float32),
                        8000, "FLOAT"), name="a.wav")
def test_a_hostile_recording_upload_is_refused_at_its_field(admin, data, name):
    form = {"op": "check", "nsteps": "1", "script": "three-step-circle", "language": "en_US", "voice": VOICE,
            "s0_id": "welcome", "s0_kind": "say", "s0_text": "Hello.", "s0_then": "wait_for_next",
            "s0_recording": (io.BytesIO(data), name or "x")}
    before = admin.snapshot()
    response = admin.post_files("/circles/three-step-circle/edit", form, form_path="/circles/new")
    check(admin, before, response, new_ok=("scripts/recordings/",))
    if _not_sound(data) and (name or "x").lower().endswith((".wav", ".mp3", ".ogg", ".flac")):
        assert response.status_code == 400
        assert 'id="err-s0_recording"' in response.get_data(as_text=True)
        assert admin.snapshot() == before


def test_a_recording_of_infinities_is_refused(admin):
    """Regression (found by the fuzz: a float WAV of +inf samples was accepted, its loudness
    normalised to NaN, and NaN cast to 16-bit PCM was kept as the step's recording)."""
    before = admin.snapshot()
    form = {"op": "check", "nsteps": "1", "script": "three-step-circle", "language": "en_US", "voice": VOICE,
            "s0_id": "welcome", "s0_kind": "say", "s0_text": "Hello.", "s0_then": "wait_for_next",
            "s0_recording": (io.BytesIO(INF_WAV), "a.wav")}
    response = admin.post_files("/circles/three-step-circle/edit", form, form_path="/circles/new")
    assert response.status_code == 400
    assert "damaged" in response.get_data(as_text=True)
    assert admin.snapshot() == before


# -- importing a circle file -----------------------------------------------------------------------

DEFAULT = yaml.safe_load((packaged_scripts_dir() / "three-step-circle.yaml").read_text(encoding="utf-8"))


@st.composite
def circle_files(draw):
    kind = draw(st.sampled_from(["bytes", "text", "mutated", "mutated"]))
    if kind == "bytes":
        return draw(st.binary(max_size=500))
    if kind == "text":
        return draw(weird).encode("utf-8")
    data = yaml.safe_load(yaml.safe_dump(DEFAULT))
    for _ in range(draw(st.integers(1, 3))):
        steps = data.get("steps") if isinstance(data.get("steps"), list) else []
        steps = [s for s in steps if isinstance(s, dict)]
        target = draw(st.sampled_from(steps)) if steps and draw(st.booleans()) else data
        key = draw(st.sampled_from([*sorted(target), "extra"]))
        replacement = draw(st.one_of(st.none(), st.integers(-(10**40), 10**40), weird, st.lists(weird, max_size=2),
                                     st.floats(allow_nan=True, allow_infinity=True)))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = replacement
    return yaml.safe_dump(data, allow_unicode=True).encode("utf-8")


@FUZZ
@given(content=circle_files(), name=st.one_of(st.just("circle.yaml"), weird))
def test_an_imported_file_is_either_a_circle_or_refused_with_its_problems(admin, content, name):
    before = admin.snapshot()
    response = admin.post_files("/circles/import", {"file": (io.BytesIO(content), name or "x")},
                                form_path="/circles/")
    check(admin, before, response)


# -- settings, every section -----------------------------------------------------------------------

SETTINGS_FIELDS = (
    ["box_name", "box_site", "volume", "volume_cap", "listen_enabled", "vad_aggressiveness", "commands_enabled",
     "commands_language", "phrases", "allowed_hosts", "org_unit", "category_option_combo", "data_set",
     "period_type", "listen_noise_margin_db", "listen_speech_start_s", "listen_speech_end_hangover_s",
     "listen_min_speech_db"]
    + [f"btn{i}_{k}" for i in range(6) for k in ("press", "hold")]
    + [f"de_{k}" for k in dhis2_measures()]
)


@st.composite
def settings_forms(draw):
    section = draw(st.one_of(st.sampled_from(["box", "buttons", "listening", "dhis2", "access"]), weird))
    keys = draw(st.lists(st.sampled_from(SETTINGS_FIELDS), unique=True, max_size=12))
    return [("section", section), *field_values(draw, keys)]


@FUZZ
@given(items=settings_forms())
@example(items=[("section", "box"), ("box_name", "x"), ("volume", "1e309"), ("volume_cap", "90")])
@example(items=[("section", "listening"), ("listen_speech_start_s", "nan"), ("commands_language", "en")])
@example(items=[("section", "access"), ("allowed_hosts", "ü.example, 999.1.1.1, [::1]")])
def test_a_settings_form_never_crashes_and_a_refusal_saves_nothing(admin, items):
    before = admin.snapshot()
    response = admin.post("/settings/", items)
    check(admin, before, response)


# -- login and first-time setup (no session) -------------------------------------------------------


@FUZZ
@given(items=st.builds(lambda a, b: a + b, st.just([]), st.lists(st.tuples(st.sampled_from(["password", "next"]),
                                                                          value), max_size=4)))
def test_login_with_anything_never_crashes(admin, items):
    client = admin.app.test_client()
    tok = token(client, "/login")
    before = admin.snapshot()
    from werkzeug.datastructures import MultiDict

    response = client.post("/login", data=MultiDict([("csrf_token", tok), *items]))
    body = response.get_data(as_text=True)
    assert response.status_code < 500, body[:3000]
    assert response.status_code != 302 or any(v == "blue river morning tea" for k, v in items if k == "password")
    check(admin, before, response)


@pytest.fixture(scope="module")
def fresh():
    tmp = tempfile.TemporaryDirectory()
    data = Path(tmp.name) / "data"
    app = make_app(data, render=FakeRender())
    yield app, data
    tmp.cleanup()


@FUZZ
@given(items=st.lists(st.tuples(st.sampled_from(["code", "password", "confirm"]), value), max_size=6))
def test_setup_with_anything_never_crashes_nor_sets_a_password(fresh, items):
    app, data = fresh
    client = app.test_client()
    tok = token(client, "/setup")
    code = (data / "secrets" / "setup-code").read_text().strip()
    from werkzeug.datastructures import MultiDict

    response = client.post("/setup", data=MultiDict([("csrf_token", tok), *items]))
    body = response.get_data(as_text=True)
    assert response.status_code < 500, body[:3000]
    if not any(k == "code" and v.strip() == code for k, v in items):
        assert response.status_code in (400, 429), body[:2000]
        assert re.search(r'class="(field-error|problems)"', body), body[:3000]
        assert not (data / "admin" / "password.json").exists()
