"""The admin page in French and Swahili: every page, chosen by the browser or by the box's setting.

The walk renders each page in English and in the target language with the same data, and
checks that no English text a person reads (text nodes, placeholders, titles, aria-labels,
button values, the script's words, the live status) shows up untranslated. A segment may stay
the same only when it is a name, number or code, the circle's own words, or a translation the
catalogue deliberately keeps ("Volume" is French too).
"""

from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from admin_forms import form_values
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from test_admin_support import (
    PASSWORD,
    FakeBox,
    FakeClock,
    login,
    make_app,
    make_config,
    serve_fake_box,
    set_password,
    token,
)

from device.script import DEFAULT_MESSAGES
from device.system_prompts import pack_prompts
from device.usage import UsageStore
from local_admin.i18n import language_choices, page_languages
from local_admin.security import MIN_PASSWORD

TRANSLATIONS = Path(__file__).resolve().parent.parent / "local_admin" / "translations"
LANGUAGES = ("fr", "sw")
READ_ATTRIBUTES = ("placeholder", "title", "aria-label", "alt")
# Names and codes that are the same in every language.
NAMES = {"Circlebox", "DHIS2", "CSV", "JSON", "dB", "dBFS", "UTC", "GB", "min", "USB"}


class _Texts(HTMLParser):
    """Every text a person reads on a page: text nodes (not scripts or styles) and the
    attributes that are read out or shown."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.page_words: str = ""
        self._skip: str | None = None

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag in ("script", "style", "textarea", "code", "pre"):  # code, or the circle's own text
            self._skip = "page-words" if values.get("id") == "page-words" else tag
            return
        for name in READ_ATTRIBUTES:
            if values.get(name):
                self.texts.append(values[name])
        if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
            self.texts.append(values["value"])
        if values.get("id") == "prompts":  # the sentences the studio's script shows
            self.texts += [value for name, value in values.items() if name.startswith("data-") and value]

    def handle_endtag(self, tag):
        if tag in ("script", "style", "textarea", "code", "pre"):
            self._skip = None

    def handle_data(self, data):
        if self._skip == "page-words":
            self.page_words += data
        elif self._skip is None:
            self.texts.append(data)


def normal(text: str) -> str:
    return " ".join(text.split()).strip(" :.()◯■●▶✓＋+🎙“”")


def segments(html: str) -> tuple[set[str], dict]:
    parser = _Texts()
    parser.feed(html)
    out = set()
    for text in parser.texts:
        for part in re.split(r"\s*[·\n]\s*", text):
            part = normal(re.sub(r"^\d+\. ", "", part.strip()))  # "2. Sharing round": a step's title
            if part:
                out.add(part)
    return out, (json.loads(parser.page_words) if parser.page_words else {})


def is_word_text(text: str) -> bool:
    """Text in a language (not a number, code, id, unit or symbol)."""
    words = re.findall(r"[A-Za-z]+", text)
    if all(len(w) == 1 or w in NAMES for w in words):
        return False  # a number, a date, "Circlebox", "DHIS2 (CSV)"
    if re.fullmatch(r"\w+ \([a-z]{2,3}", text):
        return False  # a language's name with its code: "Kinyarwanda (rw)"
    if re.fullmatch(r"[\w.:/@%+-]+", text) and re.search(r"[\d_:/.-]", text):
        return False  # en_US, goto:share, clinic-north, s0_text, 2026-01-10
    return " " in text or text[:1].isupper() or text.isalpha()


def kept_on_purpose(language: str) -> re.Pattern:
    """Translations that read the same as the English ("Volume", "Version %(version)s" in
    French): a pattern that matches them, with any value in place of each %(name)s."""
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po)
    patterns = []
    for message in catalog:
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for text in strings:
            if text and re.search(r"[^\W\d_]", re.sub(r"%\(\w+\)[sd]", "", text)):  # not only placeholders
                text = normal(text.replace("%%", "%"))
                patterns.append(re.sub(r"%\\\(\w+\\\)[sd]", ".+", re.escape(text)))
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def user_content(data_dir: Path, circle: str) -> set[str]:
    """The circle's own words and ids, the box's spoken defaults: content, not the page's words."""
    from local_admin import store

    def strings(value) -> list[str]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list | tuple):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    path = store.find_path(data_dir, circle)
    found = strings(store.raw_dict(path.read_text(encoding="utf-8"))) if path else []
    for other in store.list_circles(data_dir):  # the lists, the panel and the course editor show other circles
        other_path = store.find_path(data_dir, other.id)
        found += strings(store.raw_dict(other_path.read_text(encoding="utf-8"))) if other_path else []
    from device.course import list_courses, resolve_course

    found += [resolve_course(name, data_dir).course.display_title for name in list_courses(data_dir)]
    found += list_courses(data_dir)  # a course's id ("kikundi") is a name
    found += [*DEFAULT_MESSAGES.values(), *(title for _id, title in FakeBox.STEPS)]
    found += ["Room 2", *(name for _code, name in language_choices())]  # the site; each language's own name
    found += [button.name for button in make_config(data_dir).buttons.map]  # names in the box's config
    found += list(pack_prompts(make_config(data_dir)).values())  # the box's English, to be said in the language
    return {normal(line) for text in found for line in text.splitlines()}


class FaultyBox(FakeBox):
    """A running box with faults and a countdown, so the panel shows all its sentences."""

    def status(self) -> dict:
        status = super().status()
        status["faults"] = ["mic: arecord: main:831: audio open error", "circle: sound 'x' is not rendered"]
        status["countdown"] = {"kind": "turn", "turn": 2, "limit_s": 120, "remaining_s": 30}
        status["clock"] = {"time": "2020-01-01T00:00:00+00:00", "trusted": False}
        status["led"] = "speaking"
        return status


def add_usage(data_dir: Path) -> None:
    usage = UsageStore(data_dir / "usage.sqlite")
    for i, minutes in enumerate((60, 2)):  # one circle held, one test run
        usage.upsert({
            "id": f"s{i}", "box": "clinic-north", "script": "three-step-circle", "script_version": 1,
            "started_at": f"2026-01-1{i}T09:00:00+00:00", "ended_at": f"2026-01-1{i}T10:00:00+00:00",
            "duration_s": minutes * 60.0, "completed": True, "steps_planned": 6, "steps_delivered": 6,
            "core_planned": 4, "core_delivered": 4, "repeats": 1, "pauses": 0, "help_count": 1,
            "attendance": 12, "clock_trusted": i == 0,
            # the held circle: the box did not hear every voice clearly (the usage page says so)
            "rounds": [{"step": "share", "turns": 8, "passes": 1, "listened": 8,
                        "left_to_facilitator": 3}] if i == 0 else [],
        })
    usage.close()


def walk(tmp_path: Path, browser: str, setting: str = "auto") -> tuple[dict[str, str], dict, str]:
    """Every page as the browser (Accept-Language) sees it: {name: html}, the live status JSON."""
    data_dir = tmp_path / f"{browser}-{setting}"
    app = make_app(data_dir, admin={"language": setting}, clock=FakeClock())  # lockouts wait for no one
    headers = {"Accept-Language": browser}
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = browser  # every request, the helpers' too
    pages: dict[str, str] = {}

    def get(name: str, path: str, status: int = 200, **kwargs) -> str:
        response = client.get(path, headers=headers, **kwargs)
        assert response.status_code == status, (name, path, response.status_code)
        pages[name] = response.get_data(as_text=True)
        return pages[name]

    def post(name: str, path: str, data: dict, status: int = 200) -> str:
        response = client.post(path, data=data, headers=headers)
        assert response.status_code == status, (name, path, response.status_code)
        pages[name] = response.get_data(as_text=True)
        return pages[name]

    get("setup", "/setup")
    assert set_password(client, data_dir).status_code == 302
    box, server = serve_fake_box(data_dir, FaultyBox())
    try:
        box.dispatch("start", "button:next")
        add_usage(data_dir)
        get("panel", "/panel/")
        status = client.get("/panel/status.json", headers=headers).get_json()
        circles = get("circles", "/circles/")
        circle = re.search(r'/circles/([\w-]+)/edit"', circles)[1]
        editor = get("editor", f"/circles/{circle}/edit")
        get("new circle", "/circles/new")
        post("editor with problems", f"/circles/{circle}/edit",
             broken_circle(form_values(editor), token(client, f"/circles/{circle}/edit")), status=400)
        in_swahili = {**form_values(editor), "csrf_token": token(client, f"/circles/{circle}/edit"),
                      "language": "sw", "op": "check"}  # the English voice cannot speak it
        post("editor: circle in another language", f"/circles/{circle}/edit", in_swahili, status=400)
        get("studio", f"/circles/{circle}/studio/")
        get("box messages", "/system/messages/")
        add_broken_pack(data_dir)
        get("box messages: broken pack", "/system/messages/?language=sw")
        get("versions", f"/circles/{circle}/history")
        add_unsayable_course(data_dir)
        get("courses", "/courses/")
        get("new course", "/courses/new")
        post("course editor with problems", "/courses/new",
             course_form(token(client, "/courses/new"), [(circle, "0", False)], title="T" * 150), status=400)
        post("course editor: missing circles", "/courses/new",
             course_form(token(client, "/courses/new"), [(circle, "2", True), ("no-such-circle", "3", False)],
                         bus_stop_circle="missing-stop"), status=400)
        tok = token(client, "/settings/")
        client.post("/settings/", data={"csrf_token": tok, "section": "box", "box_name": "clinic-north",
                                        "box_site": "Room 2", "volume": "60", "volume_cap": "90"},
                    headers=headers)
        get("settings (after a save)", "/settings/")
        get("usage", "/usage/?tests=1")
        get("usage without tests", "/usage/")
        get("system", "/system/")
        get("password", "/password")
        post("password too short", "/password", {"csrf_token": token(client, "/password"), "current": PASSWORD,
                                                 "password": "short", "confirm": "short"}, status=400)
        post("confirm stop", "/panel/press", {"csrf_token": tok, "action": "stop"})
        post("confirm restart", "/system/power", {"csrf_token": tok, "what": "restart"})
        post("confirm delete record", "/usage/s0/delete", {"csrf_token": tok})
        get("not found", "/circles/no-such-circle/edit", status=404)
        post("form refused", "/settings/", {"section": "box"}, status=400)
        values = form_values(editor)
        values.update(csrf_token=token(client, f"/circles/{circle}/edit"), op="save")
        saved = client.post(f"/circles/{circle}/edit", data=values, headers=headers)
        assert saved.status_code in (302, 303), saved.status_code
        assert app.extensions["circlebox"].renders.wait_idle()
        get("job", saved.headers["Location"])
        refused = refuse_in_swahili(app, data_dir, circle)
        get("job: render refused", f"/circles/jobs/{refused.id}")
        live = client.get(f"/circles/jobs/{refused.id}.json", headers=headers).get_json()["message"]
        html_tag = re.search(r'<html lang="[\w-]+">', pages["job: render refused"])[0]  # the same page, live
        pages["job: render refused, as the page updates it"] = f"{html_tag}<p>{escape(live)}</p>"
        client.post("/logout", data={"csrf_token": token(client, "/panel/")}, headers=headers)
        get("login", "/login")
        guesser = app.test_client()  # another phone: its lockout leaves this one free to log in
        guesser.environ_base.update(HTTP_ACCEPT_LANGUAGE=browser, REMOTE_ADDR="192.0.2.7")
        for attempt, (name, expected) in enumerate([("wrong password", 401), (None, 401),
                                                  ("wrong password, must wait", 429), ("locked out", 429)]):
            response = guesser.post("/login", data={"csrf_token": token(guesser, "/login"),
                                                    "password": f"not it {attempt}"}, headers=headers)
            assert response.status_code == expected, (attempt, response.status_code)
            if name:
                pages[name] = response.get_data(as_text=True)
        response = client.post("/login", data="x" * 70_000, headers={**headers, "Content-Type": "text/plain"})
        assert response.status_code == 413
        pages["too big"] = response.get_data(as_text=True)
        assert login(client).status_code == 302
    finally:
        server.close()
    return pages, status, circle


def add_broken_pack(data_dir: Path) -> None:
    """A Swahili language pack of the box's own that names a recording it does not have."""
    from device.datafolder import DataFolder
    from device.fsutil import atomic_write_text

    folder = DataFolder(data_dir).language_pack("sw")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "pack.yaml",
                      "language: sw\nprompts:\n  sys:setup_code: {audio: sys-setup_code-1a2b3c4d5e.wav}\n")


def refuse_in_swahili(app, data_dir: Path, circle: str):
    """A save whose rendering the renderer itself refuses (audio.render.refuse_wrong_language:
    the circle says it is Swahili, its voice speaks English): the job fails with that refusal.
    The refusal comes before any rendering, so no Piper runs."""
    from audio.render import refuse_wrong_language
    from device.script import parse_script
    from local_admin import store

    english = parse_script(store.find_path(data_dir, circle).read_text(encoding="utf-8"), circle).script
    script = english.model_copy(update={"language": "sw"})
    st = app.extensions["circlebox"]
    job = st.renders.submit(circle, 99, lambda job: refuse_wrong_language(script, st.config.voice_dirs))
    assert st.renders.wait_idle() and job.state == "failed"
    return job


def add_unsayable_course(data_dir: Path) -> None:
    """A Swahili course whose circles this box does not have: no voice can say its announcements
    ("This is session 1 of 3"), and the Courses page says so, with each missing circle."""
    from device.course import parse_course
    from device.course_play import AnnouncementMissing, render_announcements
    from device.datafolder import DataFolder
    from device.fsutil import atomic_write_text

    text = ("course: kikundi\ntitle: Kikundi cha Jumanne\nversion: 1\nlanguage: sw\n"
            "sessions:\n  - {circle: no-such-circle, repeat: 3}\n")
    atomic_write_text(DataFolder(data_dir).course("kikundi"), text)
    with pytest.raises(AnnouncementMissing):  # no Swahili voice: found without rendering anything
        render_announcements(parse_course(text, "kikundi").course, make_config(data_dir), DataFolder(data_dir))


def course_form(csrf: str, rows: list[tuple[str, str, bool]], *, title: str = "",
                bus_stop_circle: str = "bus-stop") -> dict:
    """The course editor's form ("check"): each row is (circle, repeat, bus stop after it)."""
    data = {"csrf_token": csrf, "op": "check", "course": "tuesday-group", "title": title, "language": "en",
            "bus_stop_circle": bus_stop_circle, "nsessions": str(len(rows))}
    for i, (circle, repeat, bus_stop) in enumerate(rows):
        data.update({f"c{i}_circle": circle, f"c{i}_repeat": repeat, **({f"c{i}_bus_stop": "on"} if bus_stop else {})})
    return data


def broken_circle(values: dict, csrf: str) -> dict:
    """The editor's form with mistakes the circle validator names at their fields: a step id it
    refuses, a round whose gentle reminder comes after its longest turn, a bell rung 0 times."""
    return {**values, "csrf_token": csrf, "op": "check", "s0_id": "Welcome Step",
            "s1_kind": "round", "s1_warn_s": "500", "s1_max_s": "100", "s2_kind": "bell", "s2_bells": "0"}


def compare(english: dict[str, str], local: dict[str, str], language: str, content: set[str]) -> list[str]:
    kept = kept_on_purpose(language)
    problems = []
    for name, html in english.items():
        source, source_words = segments(html)
        target, target_words = segments(local[name])
        for text in sorted(source & target):
            if is_word_text(text) and text not in content and not kept.fullmatch(text):
                problems.append(f"{name}: {text!r}")
        for key, text in source_words.items():
            if target_words.get(key) == text:
                problems.append(f"{name} (script words): {key} = {text!r}")
    return problems


def status_problems(english: dict, local: dict) -> list[str]:
    """The live status the page's script shows, in the reader's words."""
    out = []
    for key in ("state_text", "last_input_text", "step_text"):
        if english[key] == local[key]:
            out.append(f"status {key}: {english[key]!r}")
    for a, b in zip(english["parts"], local["parts"], strict=True):
        for key in ("label", "text", "advice"):
            if a[key] and a[key] == b[key]:
                out.append(f"status part {a['part']} {key}: {a[key]!r}")
    for a, b in zip(english["problems"], local["problems"], strict=True):
        for key in ("summary", "advice"):
            if a[key] == b[key]:
                out.append(f"status fault {key}: {a[key]!r}")
    if english["countdown"]["label"] == local["countdown"]["label"]:
        out.append(f"status countdown: {english['countdown']['label']!r}")
    return out


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    return walk(tmp_path_factory.mktemp("en"), "en")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("chosen_by", ["browser", "setting"])
def test_every_page_is_in_the_readers_language(english, tmp_path, language, chosen_by):
    pages_en, status_en, circle = english
    if chosen_by == "browser":
        pages, status, _ = walk(tmp_path, language)
    else:  # the box's setting wins over a browser that asks for English
        pages, status, _ = walk(tmp_path, "en", setting=language)
    assert pages.keys() == pages_en.keys()
    for name, html in pages.items():
        assert f'<html lang="{language}">' in html, name
    content = user_content(tmp_path / ("en-" + language if chosen_by == "setting" else f"{language}-auto"), circle)
    problems = compare(pages_en, pages, language, content) + status_problems(status_en, status)
    problems += [f"not shown: {missing}" for missing in problems_missing(pages, language)]
    assert not problems, "untranslated:\n" + "\n".join(problems)


def test_english_is_the_default_and_unchanged(english):
    pages, status, _ = english
    assert all('<html lang="en">' in html for html in pages.values())
    assert "Live panel" in pages["panel"] and "Write a new circle" in pages["circles"]
    assert status["state_text"] == "Speaking"
    assert "2026-01-10 09:00" in pages["usage"]  # dates stay as they were in English


# What the walk's problem pages must show, in English and in each language (so the walk checks
# real problems, not an empty page): the validator's, device.language's, the password's, the lockout's.
PROBLEMS_SHOWN = {
    "en": {
        "editor with problems": ["use lower-case letters, digits, - and _ (up to 40), starting with a letter",
                                 "“Gentle reminder after (s)” (500) must be less than", "greater than or equal to 1"],
        "editor: circle in another language": ["en_US-joe-medium speaks English; this circle is in Swahili",
                                               "the box's own words for this are English; this circle is in Swahili"],
        "password too short": [f"use at least {MIN_PASSWORD} characters"],
        "course editor with problems": ["is too long (at most 120 characters)", "must be at least 1"],
        "course editor: missing circles": ["Sessions 3 to 5 use the circle 'no-such-circle', which this box does not",
                                           "The bus stop after session 2 uses the circle 'missing-stop'"],
        "courses": ["no voice on this box speaks Swahili (the language of course 'kikundi': en_US-joe-medium "
                    "speaks English)", "Sessions 1 to 3 use the circle 'no-such-circle', which this box"],
        "job: render refused": ["prompt step:welcome: Step 1 'welcome': en_US-joe-medium speaks English; this "
                                "circle is in Swahili", "(and 30 more prompts)"],
        "box messages: broken pack": ["pack.yaml: sys:setup_code: the recording sys-setup_code-1a2b3c4d5e.wav "
                                      "is not there"],
        "wrong password": ["That password is not right."],
        "locked out": ["Too many wrong tries. Wait 2 seconds, then try again."],
    },
    "fr": {
        "editor with problems": ["en commençant par une lettre ou un chiffre", "doit être plus petit que",
                                 "La valeur doit être d'au moins 1"],
        "editor: circle in another language": ["en_US-joe-medium parle anglais ; ce cercle est en swahili",
                                               "le boîtier dit ceci en anglais ; ce cercle est en swahili"],
        "password too short": [f"utilisez au moins {MIN_PASSWORD} caractères"],
        "course editor with problems": ["est trop long (au plus 120 caractères)", "doit valoir au moins 1"],
        "course editor: missing circles": ["Les séances 3 à 5 utilisent le cercle « no-such-circle », que ce boîtier",
                                           "L'arrêt de bus après la séance 2 utilise le cercle « missing-stop »"],
        "courses": ["aucune voix de ce boîtier ne parle swahili (la langue du parcours « kikundi » : "
                    "en_US-joe-medium parle anglais)", "Les séances 1 à 3 utilisent le cercle « no-such-circle »"],
        "job: render refused": ["message step:welcome : Étape 1 « welcome » : en_US-joe-medium parle anglais ; ce "
                                "cercle est en swahili", "(et 30 autres messages)"],
        "box messages: broken pack": ["pack.yaml : sys:setup_code : l'enregistrement sys-setup_code-1a2b3c4d5e.wav "
                                      "n'est pas là"],
        "locked out": ["Trop d'essais manqués. Attendez 2 secondes, puis réessayez."],
    },
    "sw": {
        "editor with problems": ["ukianza na herufi au tarakimu", "lazima kiwe kidogo kuliko",
                                 "Thamani lazima iwe angalau 1"],
        "editor: circle in another language": ["en_US-joe-medium inazungumza Kiingereza; mduara huu ni wa Kiswahili",
                                               "kifaa husema hili kwa Kiingereza; mduara huu ni wa Kiswahili"],
        "password too short": [f"tumia angalau herufi {MIN_PASSWORD}"],
        "course editor with problems": ["ni ndefu mno (isizidi herufi 120)", "lazima iwe angalau 1"],
        "course editor: missing circles": ["Vikao 3 hadi 5 vinatumia mduara 'no-such-circle', ambao kifaa hiki",
                                           "Kituo cha basi baada ya kikao 2 kinatumia mduara 'missing-stop'"],
        "courses": ["hakuna sauti kwenye kifaa hiki inayozungumza Kiswahili (lugha ya kozi 'kikundi': "
                    "en_US-joe-medium inazungumza Kiingereza)", "Vikao 1 hadi 3 vinatumia mduara 'no-such-circle'"],
        "job: render refused": ["ujumbe step:welcome: Hatua ya 1 “welcome”: en_US-joe-medium inazungumza Kiingereza; "
                                "mduara huu ni wa Kiswahili", "(na jumbe nyingine 30)"],
        "box messages: broken pack": ["pack.yaml: sys:setup_code: rekodi sys-setup_code-1a2b3c4d5e.wav haipo"],
        "locked out": ["Majaribio mengi mno yamekosewa. Subiri sekunde 2, kisha ujaribu tena."],
    },
}


def problems_missing(pages: dict[str, str], language: str) -> list[str]:
    from html import unescape

    return [f"{name}: {text!r}" for name, texts in PROBLEMS_SHOWN[language].items() for text in texts
            if text not in " ".join(unescape(pages[name]).split())]


def test_the_walk_shows_each_kind_of_problem(english):
    pages, _status, _circle = english
    assert not problems_missing(pages, "en")


def test_a_language_with_no_catalogue_falls_back_to_english(tmp_path):
    app = make_app(tmp_path / "data")
    client = app.test_client()
    html = client.get("/setup", headers={"Accept-Language": "de-DE,de;q=0.9"}).get_data(as_text=True)
    assert '<html lang="en">' in html and "Welcome to this Circlebox" in html
    html = client.get("/setup", headers={"Accept-Language": "sw-KE,sw;q=0.9"}).get_data(as_text=True)
    assert '<html lang="sw">' in html and "Karibu" in html


def test_dates_and_numbers_follow_the_language(tmp_path):
    add_usage(tmp_path / "data")
    app = make_app(tmp_path / "data")
    client = app.test_client()
    set_password(client, tmp_path / "data")
    french = client.get("/usage/?tests=1", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert "10 janv. 2026 09:00" in french
    system = client.get("/system/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert re.search(r"\d+,\d Go libres sur \d+,\d Go", system)


def test_the_page_language_setting_is_saved_from_the_settings_page(tmp_path):
    data_dir = tmp_path / "data"
    app = make_app(data_dir)
    client = app.test_client()
    set_password(client, data_dir)
    html = client.get("/settings/").get_data(as_text=True)
    assert '<option value="sw" lang="sw"' in html and "Kiswahili" in html and "Français" in html
    tok = token(client, "/settings/")
    saved = client.post("/settings/", data={"csrf_token": tok, "section": "access", "allowed_hosts": "",
                                             "page_language": "sw"})
    assert saved.status_code == 302
    assert app.extensions["circlebox"].config.admin.language == "sw"
    assert '<html lang="sw">' in client.get("/settings/", headers={"Accept-Language": "fr"}).get_data(as_text=True)
    refused = client.post("/settings/", data={"csrf_token": tok, "section": "access", "allowed_hosts": "",
                                               "page_language": "not a language"})
    assert refused.status_code == 400 and 'id="err-page_language"' in refused.get_data(as_text=True)


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_compiled_catalogue_matches_its_source(language):
    """The .mo files are committed (no build step); they must say what the .po says."""
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as po, (folder / "messages.mo").open("rb") as mo:
        source, compiled = read_po(po), read_mo(mo)
    def table(catalog) -> dict:
        return {tuple(m.id) if isinstance(m.id, list | tuple) else m.id:
                tuple(m.string) if isinstance(m.string, list | tuple) else m.string
                for m in catalog if m.id and not m.fuzzy}

    wanted, got = table(source), table(compiled)
    assert got == wanted, "run: pybabel compile -d local_admin/translations"
    assert all(all(s) if isinstance(s, tuple) else s for s in wanted.values()), "every message is translated"
    assert language in page_languages()


# One word for each thing the page names, as a reader finds it in the menu and on the buttons:
# a second word for "box" or "circle" reads as a second thing (and a button quoted in another
# word cannot be found). Where the English means something else ("tick the box"), it is allowed.
TERMS = {
    "fr": {"box": ("boîtier", ("boîte ", "appareil")), "circle": ("cercle", ())},
    "sw": {"box": ("kifaa", ("kisanduku",)), "circle": ("mduara", (" duara", "Duara"))},
}
OTHER_MEANING = {"Tick the box to confirm deleting."}


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_thing_has_one_name_in_each_language(language):
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po)
    mixed = []
    for message in catalog:
        if not message.id or message.id in OTHER_MEANING:
            continue
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        for _thing, (_word, other_words) in TERMS[language].items():
            mixed += [f"{message.id!r}: {text!r}" for text in texts if any(o in text for o in other_words)]
    assert not mixed, "a second word for one thing:\n" + "\n".join(mixed)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_button_quoted_in_a_sentence_is_quoted_by_its_translated_name(language):
    """'Press “Use on the box”' must quote the button as the reader's page labels it."""
    with (TRANSLATIONS / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        table = {m.id: m.string for m in read_po(po) if isinstance(m.id, str) and m.id}
    quoted = re.compile(r'[“"«]\s?([^”"»]+?)\s?[”"»]')
    wrong = [f"{sentence!r} quotes {name!r} as something other than {table[name]!r}"
             for sentence, translated in table.items() for name in quoted.findall(sentence)
             if name in table and table[name] not in quoted.findall(translated)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("language", "missing_voice", "missing_recording"), [
    ("fr", "voix « no-such-voice » introuvable", "l'enregistrement gone.wav est introuvable dans"),
    ("sw", "sauti 'no-such-voice' haipatikani", "rekodi gone.wav haipatikani katika"),
])
def test_the_studio_says_why_it_cannot_make_a_sound_in_the_readers_language(
        tmp_path, language, missing_voice, missing_recording):
    """The studio's Listen (studio._render_one) on a circle whose voice is gone, and on a take whose
    file is gone: both refused before any Piper runs, and said in the reader's language."""
    from device.script import Recording, load_script
    from local_admin.studio import _render_one

    app = make_app(tmp_path / "data")
    circles = Path(__file__).resolve().parent.parent / "device" / "scripts"
    script = load_script(circles / "three-step-circle.yaml").script
    with app.test_request_context(headers={"Accept-Language": language}):
        _url, no_voice = _render_one(script.model_copy(update={"voice": "no-such-voice"}), ("Karibu.",))
        _url, no_take = _render_one(script, (Recording(audio="gone.wav"),))
    assert missing_voice in no_voice and "not found" not in no_voice
    assert missing_recording in no_take and "not found" not in no_take


@pytest.mark.parametrize(("language", "words"), [
    ("en", "a course has far fewer: check that the file is a course"),
    ("fr", "un parcours en a bien moins : vérifiez que le fichier est un parcours"),
    ("sw", "kozi ina vichache zaidi: hakikisha kwamba faili ni kozi"),
])
def test_a_course_file_too_big_to_read_is_said_in_the_readers_language(tmp_path, language, words):
    """A course past the circle parser's bound (more YAML entries than any course has) is said
    as a course, in the reader's language; the CLI's English is the same words."""
    from device.course import CourseError, parse_course
    from local_admin.i18n import problem_text

    with pytest.raises(CourseError) as refused:
        parse_course("course: big\nsessions: [" + "1," * 20_001 + "1]\n", "big.yaml")
    assert "a course has far fewer: check that the file is a course" in str(refused.value)
    app = make_app(tmp_path / "data")
    with app.test_request_context(headers={"Accept-Language": language}):
        assert words in problem_text(refused.value.problems[0])
