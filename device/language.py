"""Which language each prompt of a circle would be spoken in, and what is wrong with that.

One rule, used by `circlebox validate`, the editor (Check and Save), the studio, Listen and the
renderer (so the box never plays synthesized speech in another language than the circle's
unless the circle says `allow_other_language: true`):

- a recording is in the circle's language (the therapist made it for this circle);
- text is in the circle's language, except a box message the circle does not give: that is the
  box's built-in English (`device.script.DEFAULT_MESSAGES`);
- text is spoken by the circle's voice, in the voice's language (a Piper voice declares it in
  its `.onnx.json`); with no voice, text cannot be spoken at all: it needs a recording.

Nothing here reads voice files: the caller passes the voice's language (audio.voices knows it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from device.problems import N_, LanguageName, Problem
from device.script import DEFAULT_MESSAGES, Recording, RoundStep, Script, SpokenBetween

BUILT_IN_LANGUAGE = "en"  # the box's own words (DEFAULT_MESSAGES, device/actions.py) are English

# Names people use for the languages of the programmes this box is made for (ISO 639-1/-3).
LANGUAGE_NAMES: dict[str, str] = {
    "am": "Amharic", "ar": "Arabic", "bn": "Bengali", "de": "German", "en": "English",
    "es": "Spanish", "fa": "Persian", "fr": "French", "ha": "Hausa", "hi": "Hindi", "id": "Indonesian",
    "ig": "Igbo", "it": "Italian", "km": "Khmer", "ko": "Korean", "ku": "Kurdish", "lg": "Luganda",
    "my": "Burmese", "ne": "Nepali", "ny": "Chichewa", "om": "Oromo", "ps": "Pashto", "pt": "Portuguese",
    "ru": "Russian", "rw": "Kinyarwanda", "sn": "Shona", "so": "Somali", "sw": "Swahili", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "ti": "Tigrinya", "tr": "Turkish", "uk": "Ukrainian", "ur": "Urdu",
    "vi": "Vietnamese", "xh": "Xhosa", "yo": "Yoruba", "zh": "Chinese", "zu": "Zulu",
}

MESSAGE_LABELS: dict[str, str] = {
    "help": N_("Help (after HELP is pressed)"),
    "reminder": N_("Gentle reminder in a long turn"),
    "wrap_up": N_("Wrap-up at the end of a long turn"),
    "finished": N_("The circle has ended"),
    "explain": N_("Explain mode begins"),
    "ready": N_("The box is ready"),
    "resumed": N_("Carry on after a pause"),
    "rehearsal_start": N_("A rehearsal begins"),
    "rehearsal_done": N_("The end of a rehearsal ({steps}: the step titles)"),
    "rehearsal_stopped": N_("A rehearsal stopped early"),
}


def base_language(code: str | None) -> str:
    """`sw_KE`, `sw-KE`, `SW` -> `sw` (the language, without the country)."""
    return (code or "").replace("-", "_").split("_")[0].lower()


def language_name(code: str | None) -> str:
    """A language code in words: `sw_KE` -> "Swahili"; an unknown code stays as it is."""
    return LANGUAGE_NAMES.get(base_language(code), code or N_("an unknown language"))


def _named(code: str | None) -> LanguageName:
    """A language's name for a problem: English here, the reader's words on the page."""
    return LanguageName(language_name(code), code)


def same_language(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and base_language(a) == base_language(b)


def message_label(name: str) -> str:
    """What a box message is, in words ("What NEXT does" for action_next)."""
    if name == "action_setup_code":
        return "What holding two buttons together does (explain mode)"
    if name.startswith("action_"):
        return f"What the {name.removeprefix('action_').replace('_', ' ')} button does (explain mode)"
    return MESSAGE_LABELS.get(name, name.replace("_", " "))


@dataclass(frozen=True)
class PromptInfo:
    """One prompt of a circle, as the editor and the studio list it."""

    prompt_id: str  # as in Script.prompts(): step:<id>[:<suffix>] or msg:<name>
    label: str  # in words: "Step 2 'share': between turns", "Message: The box is ready"
    field: str  # the editor's field for it: s1_text, s1_between, msg_ready
    step_index: int | None
    built_in: bool  # a box message the circle does not give (the box's English default)


_SUFFIX_WORDS = {"": "", "between": "between turns", "reminder": "gentle reminder", "wrap_up": "wrap-up",
                 "notes": "facilitator note"}


def prompt_infos(script: Script) -> Iterator[PromptInfo]:
    """Every prompt of the circle in the order the box may play them: steps, then messages."""
    for index, step in enumerate(script.steps):
        for suffix in _step_suffixes(step):
            words = _SUFFIX_WORDS[suffix]
            label = f"Step {index + 1} '{step.id}'" + (f": {words}" if words else "")
            pid = f"step:{step.id}" + (f":{suffix}" if suffix else "")
            yield PromptInfo(pid, label, f"s{index}_{suffix or 'text'}", index, False)
    for name in DEFAULT_MESSAGES:
        yield PromptInfo(f"msg:{name}", f"Message: {message_label(name)}", f"msg_{name}", None,
                         name not in script.messages)


def _step_suffixes(step: object) -> list[str]:
    notes = ["notes"] if getattr(step, "notes", None) else []  # said before the step (in rehearsal)
    if isinstance(step, RoundStep):
        out = [*notes, ""]
        if isinstance(step.between_turns, SpokenBetween):
            out.append("between")
        out += [s for s in ("reminder", "wrap_up") if getattr(step, s)]
        return out
    return [*notes, *([""] if getattr(step, "say", None) else [])]


@dataclass(frozen=True)
class PromptProblem:
    """A prompt the box cannot say rightly: which one, where in the editor, and why."""

    prompt: PromptInfo
    problem: str  # a device.problems.Problem: English here, the reader's language on the page
    missing_recording: bool = False  # a recording is needed (or a voice of the circle's language)

    def __str__(self) -> str:
        return f"{self.prompt.label}: {self.problem}"


def check_prompts(script: Script, *, voice_language: str | None = None,
                  recording_exists: Callable[[str], bool] | None = None) -> list[PromptProblem]:
    """Every prompt that is missing a recording or would be spoken in the wrong language.

    `voice_language`: the language of `script.voice` (None when unknown: that check is skipped;
    an unknown voice is named elsewhere). `recording_exists(name)`: whether a recording file is
    on the box (None: not checked).
    """
    circle = _named(script.language)
    prompts = script.prompts()
    problems: list[PromptProblem] = []
    for info in prompt_infos(script):
        parts = prompts[info.prompt_id]
        for part in parts:
            if isinstance(part, Recording) and recording_exists is not None and not recording_exists(part.audio):
                problems.append(PromptProblem(
                    info, Problem(N_("the recording %(file)s is not on the box: record it again"), file=part.audio),
                    missing_recording=True))
        if not any(isinstance(p, str) for p in parts):
            continue
        problem = _text_problem(script, info, voice_language, circle)
        if problem:
            problems.append(PromptProblem(info, problem, missing_recording=True))
    return problems


def _text_problem(script: Script, info: PromptInfo, voice_language: str | None,
                  circle: LanguageName) -> Problem | None:
    """Why this prompt's text cannot be spoken rightly, or None."""
    if script.voice is None:
        if info.built_in:
            return Problem(N_("the box's own words for this are English and this circle has no voice: "
                              "write them in %(circle)s and record them"), circle=circle)
        return Problem(N_("has words but no recording, and this circle has no voice: record it"))
    if script.allow_other_language:
        return None
    if info.built_in and not same_language(script.language, BUILT_IN_LANGUAGE):
        return Problem(N_("the box's own words for this are English; this circle is in %(circle)s: "
                          "write them in %(circle)s, or record them"), circle=circle)
    if voice_language is not None and not same_language(voice_language, script.language):
        return Problem(N_("%(voice)s speaks %(spoken)s; this circle is in %(circle)s: record this, "
                          "or add a %(circle)s voice"), voice=script.voice, spoken=_named(voice_language),
                       circle=circle)
    return None


def voice_note(voice_id: str | None, voice_language: str | None, circle_language: str) -> Problem | None:
    """A sentence for the editor when the chosen voice speaks another language, else None."""
    if not voice_id or voice_language is None or same_language(voice_language, circle_language):
        return None
    return Problem(N_("%(voice)s speaks %(spoken)s; this circle is in %(circle)s: record every prompt "
                      "(the studio), or add a %(circle)s voice"), voice=voice_id,
                   spoken=_named(voice_language), circle=_named(circle_language))


__all__ = [
    "BUILT_IN_LANGUAGE",
    "PromptInfo",
    "PromptProblem",
    "base_language",
    "check_prompts",
    "language_name",
    "message_label",
    "prompt_infos",
    "same_language",
    "voice_note",
]
