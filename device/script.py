"""Session scripts: the YAML a therapist writes, validated into frozen objects.

Every error names the file, the step (id and position), the field and, where the YAML gives
it, the line, because the person fixing it is a therapist in a text editor, not a programmer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device.actions import ACTIONS
from device.problems import N_, Problem

STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
BELLS = ("soft_bell", "bell", "warn_bell", "end_bell", "chime")
MAX_TEXT = 4000
# Bounds on a circle's YAML, checked before it is parsed or validated: a real circle is a few
# KB and a few thousand nodes (100 steps at most); hostile text must not stall a page for
# minutes (40,000 unknown keys once took 117 s to report).
MAX_SCRIPT_CHARS = 512 * 1024
MAX_YAML_NODES = 20_000
MAX_PROBLEMS = 20  # problems listed; the rest are counted ("and 39,990 more")
NOTES = "notes"  # prompt id suffix of a step's facilitator note: step:<id>:notes
STEPS_PLACEHOLDER = "{steps}"  # in a box message: the circle's step titles


class ScriptError(ValueError):
    """A script that cannot be used; `problems` lists each one with its place."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "\n  ".join(self.problems))


def _must_be_less(smaller: str, small: float, larger: str, large: float) -> Problem:
    """'warn_s (200) must be less than max_s (120)': field names as written, values as given."""
    return Problem(N_("%(shorter)s (%(shorter_value)s) must be less than %(longer)s (%(longer_value)s)"),
                   shorter=smaller, shorter_value=f"{small:g}", longer=larger, longer_value=f"{large:g}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Pause(_Frozen):
    """A silence inside an exercise, so people have time to breathe or think."""

    pause: float = Field(gt=0, le=120)


class Recording(_Frozen):
    """An uploaded recording used instead of TTS (for languages without a voice)."""

    audio: str = Field(min_length=1, max_length=200)
    # the words spoken in it, for the therapist to read while recording (never synthesized)
    text: str | None = Field(default=None, max_length=MAX_TEXT)

    @field_validator("audio")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError(Problem(N_("must be a file name inside the script's recordings folder")))
        return value


def _check_text(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError(Problem(N_("is empty")))
    if len(value) > MAX_TEXT:
        raise ValueError(Problem(N_("is %(length)s characters; keep one prompt under %(limit)s"),
                                 length=len(value), limit=MAX_TEXT))
    return value


Part = Annotated[str, Field(min_length=1)] | Pause | Recording


def _normalise_parts(value: Any) -> Any:
    """`say` may be text, a recording ({audio: file}), or a list of text, pauses and recordings."""
    if isinstance(value, str | dict):
        value = [value]
    if isinstance(value, list):
        return [_check_text(p) if isinstance(p, str) else p for p in value]
    return value


Parts = tuple[Part, ...]


class _StepBase(_Frozen):
    id: str
    core: bool = False
    title: str | None = Field(default=None, max_length=80)
    # for the facilitator only (why this step, what to watch for): spoken only in rehearsal
    notes: Parts | None = None

    _notes = field_validator("notes", mode="before")(_normalise_parts)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(Problem(
                N_("use lower-case letters, digits, - and _ (up to 40), starting with a letter or digit")
            ))
        return value


class SayStep(_StepBase):
    """Speaks an instruction, then waits for NEXT (or continues)."""

    kind: Literal["say"] = "say"
    say: Parts
    then: Literal["wait_for_next", "continue"] = "wait_for_next"
    # with listening: after the instruction, move on once the room has been quiet this long
    advance: Literal["button", "on_silence"] = "button"
    advance_silence_s: float = Field(default=8.0, ge=2.0, le=120.0)

    _parts = field_validator("say", mode="before")(_normalise_parts)

    @field_validator("say")
    @classmethod
    def _not_empty(cls, value: Parts) -> Parts:
        if not any(not isinstance(p, Pause) for p in value):
            raise ValueError(Problem(N_("needs some text or a recording, not only pauses")))
        return value


class ExerciseStep(SayStep):
    """Guided audio with built-in silences; listening never advances it."""

    kind: Literal["exercise"] = "exercise"  # type: ignore[assignment]

    @field_validator("advance")
    @classmethod
    def _never_by_listening(cls, value: str) -> str:
        if value != "button":
            raise ValueError(Problem(N_(
                "an exercise has its own silences: listening never moves it on; use then: continue")))
        return value


class Turns(_Frozen):
    count: int | None = Field(default=None, ge=1, le=60)
    end_on_silence_s: float = Field(default=3.0, ge=1.0, le=15.0)
    pass_on_silence_s: float = Field(default=10.0, ge=2.0, le=60.0)
    warn_s: float = Field(default=105.0, ge=10.0, le=1800.0)
    max_s: float = Field(default=180.0, ge=15.0, le=3600.0)
    end_round_on_silence_s: float = Field(default=30.0, ge=5.0, le=600.0)

    @model_validator(mode="after")
    def _ordered(self) -> Turns:
        if self.warn_s >= self.max_s:
            raise ValueError(_must_be_less("warn_s", self.warn_s, "max_s", self.max_s))
        if self.end_on_silence_s >= self.pass_on_silence_s:
            raise ValueError(_must_be_less("end_on_silence_s", self.end_on_silence_s,
                                           "pass_on_silence_s", self.pass_on_silence_s))
        return self


class SpokenBetween(_Frozen):
    say: Parts

    _parts = field_validator("say", mode="before")(_normalise_parts)


class RoundStep(_StepBase):
    """Turn-taking: each person speaks in turn; the box keeps time and never cuts anyone off."""

    kind: Literal["round"]
    prompt: Parts
    between_turns: Literal["soft_bell", "bell", "chime", "none"] | SpokenBetween = "soft_bell"
    turns: Turns = Turns()
    reminder: Parts | None = None
    wrap_up: Parts | None = None
    then: Literal["wait_for_next", "continue"] = "wait_for_next"

    _parts = field_validator("prompt", "reminder", "wrap_up", mode="before")(_normalise_parts)


class TimerStep(_StepBase):
    """A break-out or discussion: a spoken intro, a warning bell, an end bell."""

    kind: Literal["timer"]
    say: Parts | None = None
    duration_s: float = Field(ge=10, le=4 * 3600)
    warn_before_s: float | None = Field(default=None, gt=0)
    warn_bell: Literal["warn_bell", "soft_bell", "bell", "chime"] = "warn_bell"
    end_bell: Literal["end_bell", "bell", "soft_bell", "chime"] = "end_bell"
    then: Literal["wait_for_next", "continue"] = "wait_for_next"

    _parts = field_validator("say", mode="before")(_normalise_parts)

    @model_validator(mode="after")
    def _warn_inside(self) -> TimerStep:
        if self.warn_before_s is not None and self.warn_before_s >= self.duration_s:
            raise ValueError(Problem(
                N_("%(shorter)s (%(shorter_value)s) must be shorter than %(longer)s (%(longer_value)s)"),
                shorter="warn_before_s", shorter_value=f"{self.warn_before_s:g}",
                longer="duration_s", longer_value=f"{self.duration_s:g}"))
        return self


class BellStep(_StepBase):
    kind: Literal["bell"]
    bell: Literal["soft_bell", "bell", "warn_bell", "end_bell", "chime"] = "bell"
    count: int = Field(default=1, ge=1, le=9)
    then: Literal["wait_for_next", "continue"] = "continue"


Step = Annotated[
    SayStep | ExerciseStep | RoundStep | TimerStep | BellStep, Field(discriminator="kind")
]

DEFAULT_MESSAGES: dict[str, str] = {
    "help": "Let us take a pause together. Breathe slowly. You are safe here. "
    "The facilitator will be with you in a moment.",
    "reminder": "A gentle reminder: when you are ready, begin to bring your sharing to a close.",
    "wrap_up": "Thank you for sharing. Let us gently close this turn.",
    "finished": "The circle has ended. Thank you all for coming.",
    "explain": "Press any button to hear what it does. When you are done, "
    "press and hold the help button again.",
    "ready": "The box is ready. When the group is ready, press next to begin the circle.",
    "resumed": "Let us carry on.",
    "rehearsal_start": "This is a rehearsal. Nothing is counted as a circle held. "
    "Before each step you will hear a note for the facilitator.",
    # {steps}: the circle's step titles, filled in by Script.message
    "rehearsal_done": "That is the end of the rehearsal. You practised: {steps}.",
    "rehearsal_stopped": "The rehearsal has stopped. Nothing is counted as a circle held.",
    **{f"action_{name}": text for name, text in ACTIONS.items()},
}


class Script(_Frozen):
    script: str
    title: str | None = Field(default=None, max_length=120)
    version: int = Field(ge=1)
    language: str = Field(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")
    voice: str | None = Field(default=None, min_length=1)
    steps: tuple[Step, ...] = Field(min_length=1, max_length=100)
    messages: dict[str, Parts] = Field(default_factory=dict)
    # the voice may speak text although it speaks another language than the circle's
    # (device.language: otherwise such a prompt must be recorded)
    allow_other_language: bool = False

    @field_validator("script")
    @classmethod
    def _script_id(cls, value: str) -> str:
        if not STEP_ID.match(value):
            raise ValueError(Problem(N_("use lower-case letters, digits, - and _ (up to 40)")))
        return value

    @field_validator("messages", mode="before")
    @classmethod
    def _messages(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = sorted(set(value) - set(DEFAULT_MESSAGES))
        if unknown:
            raise ValueError(Problem(N_("unknown message %(names)s (known: %(known)s)"),
                                     names=", ".join(unknown), known=", ".join(DEFAULT_MESSAGES)))
        return {k: _normalise_parts(v) for k, v in value.items()}

    @model_validator(mode="after")
    def _consistent(self) -> Script:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(Problem(N_("two steps have the id '%(id)s'; each step needs its own"),
                                         id=step.id))
            seen.add(step.id)
        # Whether each prompt can be spoken in the circle's language (a recording, or a voice
        # of that language) is device.language's rule: it needs the box's voices and files.
        return self

    # -- what the renderer and the engine need -------------------------------------------

    def step_index(self, step_id: str) -> int:
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)

    def message(self, name: str) -> Parts:
        """A box message as the box says it: the circle's own words, else the default, with
        `{steps}` (in rehearsal_done) filled in from the step titles."""
        parts = self.messages[name] if name in self.messages else (DEFAULT_MESSAGES[name],)
        steps = ", ".join(step.title or step.id for step in self.steps)
        return tuple(p.replace(STEPS_PLACEHOLDER, steps) if isinstance(p, str) else p for p in parts)

    def prompts(self) -> dict[str, Parts]:
        """Every prompt the box may play for this script, by prompt id."""
        out: dict[str, Parts] = {}
        for step in self.steps:
            for suffix, parts in _step_prompts(step):
                out[prompt_id(step.id, suffix)] = parts
        for name in DEFAULT_MESSAGES:
            out[f"msg:{name}"] = self.message(name)
        return out

    def fingerprint(self) -> str:
        """A hash of everything the box will say (voice, text, pauses, recordings by name).

        Matches a rendered set to this script even when only a built-in message changed.
        """
        import hashlib
        import json

        def plain(part: Any) -> Any:  # a recording's words are not said by the box: not hashed
            if isinstance(part, str):
                return part
            return part.model_dump(exclude={"text"} if isinstance(part, Recording) else None)

        body = {"voice": self.voice, "prompts": {k: [plain(p) for p in v] for k, v in self.prompts().items()}}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()

    def needs_voice(self) -> bool:
        return any(
            isinstance(p, str) for step in self.steps for _, parts in _step_prompts(step) for p in parts
        ) or any(isinstance(p, str) for parts in self.messages.values() for p in parts)


def prompt_id(step_id: str, suffix: str = "") -> str:
    return f"step:{step_id}" + (f":{suffix}" if suffix else "")


def _step_prompts(step: Any) -> Iterator[tuple[str, Parts]]:
    if step.notes:
        yield NOTES, step.notes
    if isinstance(step, SayStep):
        yield "", step.say
    elif isinstance(step, RoundStep):
        yield "", step.prompt
        if isinstance(step.between_turns, SpokenBetween):
            yield "between", step.between_turns.say
        if step.reminder:
            yield "reminder", step.reminder
        if step.wrap_up:
            yield "wrap_up", step.wrap_up
    elif isinstance(step, TimerStep) and step.say:
        yield "", step.say


# -- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedScript:
    """A validated script and where it came from (recordings are found next to it)."""

    script: Script
    path: Path | None
    text: str

    @property
    def recordings_dir(self) -> Path | None:
        return None if self.path is None else self.path.parent / "recordings"


_KeyIndex = dict[int, dict[Any, yaml.Node]]


def _child(node: yaml.MappingNode, key: Any, index: _KeyIndex) -> yaml.Node | None:
    """The value node under `key` (the first, as before), from an index built once per mapping,
    so naming the lines of n problems in one mapping costs n look-ups, not n scans."""
    keys = index.get(id(node))
    if keys is None:
        keys = {}
        for k, v in node.value:
            keys.setdefault(k.value, v)
        index[id(node)] = keys
    return keys.get(key)


def _line_of(root: yaml.Node | None, loc: Sequence[Any], index: _KeyIndex | None = None) -> int | None:
    """The YAML line of the node at `loc` (pydantic's error location), or of its nearest parent."""
    index = {} if index is None else index
    node, line = root, None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = _child(node, key, index)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            node = node.value[key] if key < len(node.value) else None
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


_STEP_KINDS = ("say", "exercise", "round", "timer", "bell")


def _describe_error(
    err: dict[str, Any], raw: Any, root: yaml.Node | None, index: _KeyIndex | None = None
) -> str:
    loc = list(err["loc"])
    msg = err["msg"] if err["type"] == "union" else _finding(err)
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int) and loc[2] in _STEP_KINDS:
        del loc[2]  # pydantic's discriminator tag, not a field the therapist wrote
    union_tags = ("str", "Pause", "Recording", "SpokenBetween", "constrained-str")
    yaml_loc = [p for p in loc if not (isinstance(p, str) and (
        p in union_tags or p.startswith(("function-", "literal[", "tuple["))))]
    line = _line_of(root, yaml_loc, index)
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        index = loc[1]
        step_id = None
        steps = raw.get("steps") if isinstance(raw, dict) else None
        if isinstance(steps, list) and index < len(steps) and isinstance(steps[index], dict):
            step_id = steps[index].get("id")
        field = ".".join(str(p) for p in yaml_loc[2:]) or Problem(N_("(the step)"))
        name = f"'{step_id}'" if step_id else Problem(N_("(no id)"))
        place: dict[str, Any] = {"number": index + 1, "step": name, "field": field}
    else:
        place = {"field": ".".join(str(p) for p in yaml_loc) or Problem(N_("(top level)"))}
    if err["type"] == "missing":
        msg = Problem(N_("is missing"))
    elif err["type"] == "extra_forbidden":
        msg = Problem(N_("is not a known field (check the spelling)"))
    elif err["type"] == "union_tag_invalid":
        msg = Problem(N_("kind must be one of %(kinds)s"), kinds=", ".join(_STEP_KINDS))
    return located(msg, line=line, **place)


# Where a problem is: "step 2 'share', field turns.max_s (line 14): ..." (the editor finds the
# field in this English form: local_admin.store.problems_to_fields).
_PLACES = {
    (True, True): N_("step %(number)s %(step)s, field %(field)s (line %(line)s): %(message)s"),
    (True, False): N_("step %(number)s %(step)s, field %(field)s: %(message)s"),
    (False, True): N_("field %(field)s (line %(line)s): %(message)s"),
    (False, False): N_("field %(field)s: %(message)s"),
}


def located(message: str, *, field: str, line: int | None = None, number: int | None = None,
            step: str | None = None) -> Problem:
    """`message` with its place: step (number and id) or top level, field and line."""
    place: dict[str, Any] = {"field": field, "message": message}
    if number is not None:
        place.update(number=number, step=step)
    if line:
        place["line"] = line
    return Problem(_PLACES[(number is not None, bool(line))], **place)


# pydantic's own findings, in its English words, marked so the page can translate them; a
# finding whose text differs (another pydantic version) is shown as pydantic says it.
_PYDANTIC_WORDS: dict[str, tuple[str, ...]] = {
    "greater_than": (N_("Input should be greater than %(gt)s"),),
    "greater_than_equal": (N_("Input should be greater than or equal to %(ge)s"),),
    "less_than": (N_("Input should be less than %(lt)s"),),
    "less_than_equal": (N_("Input should be less than or equal to %(le)s"),),
    "int_parsing": (N_("Input should be a valid integer, unable to parse string as an integer"),),
    "int_type": (N_("Input should be a valid integer"),),
    "int_from_float": (N_("Input should be a valid integer, got a number with a fractional part"),),
    "float_parsing": (N_("Input should be a valid number, unable to parse string as a number"),),
    "float_type": (N_("Input should be a valid number"),),
    "finite_number": (N_("Input should be a finite number"),),
    "bool_parsing": (N_("Input should be a valid boolean, unable to interpret input"),),
    "bool_type": (N_("Input should be a valid boolean"),),
    "string_type": (N_("Input should be a valid string"),),
    "dict_type": (N_("Input should be a valid dictionary"),),
    "tuple_type": (N_("Input should be a valid tuple"),),
    "string_too_short": (N_("String should have at least %(min_length)s character"),
                         N_("String should have at least %(min_length)s characters")),
    "string_too_long": (N_("String should have at most %(max_length)s character"),
                        N_("String should have at most %(max_length)s characters")),
    "string_pattern_mismatch": (N_("String should match pattern '%(pattern)s'"),),
    "too_short": (N_("Tuple should have at least %(min_length)s item after validation, not %(actual_length)s"),
                  N_("Tuple should have at least %(min_length)s items after validation, not %(actual_length)s")),
    "too_long": (N_("Tuple should have at most %(max_length)s item after validation, not %(actual_length)s"),
                 N_("Tuple should have at most %(max_length)s items after validation, not %(actual_length)s")),
    "literal_error": (N_("Input should be %(expected)s"),),
}


def _finding(err: dict[str, Any]) -> str:
    """One pydantic finding as a Problem: our validators raise theirs; pydantic's common ones
    are matched to their marked English; anything else stays pydantic's text."""
    ctx = err.get("ctx") or {}
    error = ctx.get("error")
    if isinstance(error, ValueError) and error.args and isinstance(error.args[0], Problem):
        return error.args[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    fields = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in ctx.items()}
    expected = fields.get("expected", "")
    if " or " in expected:  # "'a', 'b' or 'c'"
        first, last = expected.rsplit(" or ", 1)
        fields["expected"] = Problem(N_("%(first)s or %(last)s"), first=first, last=last)
    for template in _PYDANTIC_WORDS.get(err["type"], ()):
        try:
            problem = Problem(template, **fields)
        except (KeyError, TypeError, ValueError):
            continue
        if problem == msg:
            return problem
    return msg


_PARTS_FIELDS = ("say", "prompt", "reminder", "wrap_up", "notes")
_PARTS_HELP = N_("must be text, {pause: seconds} (more than 0, at most 120) or {audio: file name}")


def _union_key(err: dict[str, Any]) -> tuple[Any, ...] | None:
    """Errors from one value that matched none of a union's forms share this key."""
    loc = tuple(err["loc"])
    for i, part in enumerate(loc):
        if part in _PARTS_FIELDS and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            return loc[: i + 2]
        if part == "between_turns":
            return loc[: i + 1]
    return None


def _union_message(related: list[dict[str, Any]], key: tuple[Any, ...]) -> Problem:
    """One message for a value that matched none of a union's forms (`related`: its errors)."""
    if key[-1] == "between_turns":
        return Problem(N_("must be soft_bell, bell, chime, none, or {say: text}"))
    for e in related:
        if e["loc"][-1] == "pause" and e["type"] in ("greater_than", "less_than_equal"):
            return Problem(N_("pause must be more than 0 and at most 120 seconds"))
        if e["loc"][-1] == "audio" and e["type"] == "value_error":
            return Problem(N_("audio %(problem)s"), problem=_finding(e))
    return Problem(_PARTS_HELP)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster


def _count_nodes(root: yaml.Node | None, limit: int) -> int:
    """How many distinct nodes the tree has, counting stops just past `limit` (no recursion)."""
    seen: set[int] = set()
    todo = [root] if root is not None else []
    while todo and len(seen) <= limit:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            todo.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
    return len(seen)


def compose_circle_yaml(text: str, source: str) -> tuple[yaml.Node | None, Any]:
    """The YAML tree (for line numbers) and its plain value, parsed once, within the bounds."""
    if len(text) > MAX_SCRIPT_CHARS:
        raise ScriptError(source, [Problem(
            N_("is %(length)s characters; a circle file may be at most %(limit)s (split a long circle into two)"),
            length=f"{len(text):,}", limit=f"{MAX_SCRIPT_CHARS:,}")])
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if _count_nodes(root, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise ScriptError(source, [Problem(
                N_("has more than %(limit)s entries (keys, values and list items); "
                   "a circle has far fewer: check that the file is a circle"),
                limit=f"{MAX_YAML_NODES:,}")])
        raw = loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()
    return root, raw


def _problems(exc: ValidationError, raw: Any, root: yaml.Node | None) -> list[Problem]:
    """pydantic's findings in the therapist's words, each once, at most MAX_PROBLEMS of them
    and a count of the rest; linear in the number of findings."""
    errors = exc.errors()
    if any(len(e["loc"]) >= 2 and e["loc"][0] == "steps" for e in errors):
        # "steps has 0 items" only echoes that every step failed: the step errors say why
        errors = [e for e in errors if not (tuple(e["loc"]) == ("steps",) and e["type"] == "too_short")]
    by_union: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for err in errors:
        key = _union_key(err)
        if key is not None:
            by_union.setdefault(key, []).append(err)
    problems: list[Problem] = []
    seen: set[str] = set()
    more = 0
    index: _KeyIndex = {}
    described_unions: set[tuple[Any, ...]] = set()
    for err in errors:
        union_key = _union_key(err)
        if union_key is not None:
            if union_key in described_unions:
                continue
            described_unions.add(union_key)
            msg = _union_message(by_union[union_key], union_key)
            err = {**err, "loc": union_key, "type": "union", "msg": msg}
        text_ = _describe_error(err, raw, root, index)
        if text_ in seen:
            continue
        seen.add(text_)
        if len(problems) < MAX_PROBLEMS:
            problems.append(text_)
        else:
            more += 1
    if more:
        problems.append(Problem(N_("and %(count)s more problems (fix these first)") if more > 1
                                else N_("and %(count)s more problem (fix these first)"), count=f"{more:,}"))
    return problems


_NESTED = Problem(N_("nested too deeply"))


def _not_yaml(problem: Any, line: int | None) -> Problem:
    """'not valid YAML (line 3): <the YAML library's own words>'."""
    if line:
        return Problem(N_("not valid YAML (line %(line)s): %(problem)s"), line=line, problem=problem)
    return Problem(N_("not valid YAML: %(problem)s"), problem=problem)


def parse_script(text: str, source: str, path: Path | None = None) -> LoadedScript:
    """Parse and validate script text; raises ScriptError naming source, step, field and line."""
    try:
        root, raw = compose_circle_yaml(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem: Any = getattr(exc, "problem", exc)
        if problem == "exceeded maximum nesting depth":  # libyaml's own limit (1,000 levels)
            problem = _NESTED
        raise ScriptError(source, [_not_yaml(problem, mark.line + 1 if mark else None)]) from exc
    except RecursionError as exc:  # brackets nested thousands deep: the parser recurses per level
        raise ScriptError(source, [_not_yaml(_NESTED, None)]) from exc
    if not isinstance(raw, dict):
        raise ScriptError(source, [Problem(N_("must be a mapping with script, version, language and steps"))])
    steps = raw.get("steps")
    if isinstance(steps, list):  # a step without a kind is a `say` step
        with_kinds = [({"kind": "say", **s} if isinstance(s, dict) and "kind" not in s else s) for s in steps]
        raw = {**raw, "steps": with_kinds}
    try:
        script = Script.model_validate(raw)
    except RecursionError as exc:  # a self-referencing YAML alias (&a [*a]) or a very deep tree
        raise ScriptError(source, [located(Problem(N_("nested too deeply (or refers to itself)")),
                                           field=Problem(N_("(top level)")))]) from exc
    except ValidationError as exc:
        raise ScriptError(source, _problems(exc, raw, root)) from exc
    return LoadedScript(script=script, path=path, text=text)


def read_text_file(path: Path, error: Callable[[str, list[Problem]], Exception]) -> str:
    """A circle's or a course's file as text; `error(source, problems)` (ScriptError, CourseError)
    when it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(str(path), [Problem(N_("is not UTF-8 text"))]) from exc
    except OSError as exc:
        raise error(str(path), [Problem(N_("cannot read: %(reason)s"), reason=exc.strerror)]) from exc


def load_script(path: Path) -> LoadedScript:
    return parse_script(read_text_file(path, ScriptError), str(path), path)


def packaged_scripts_dir() -> Path:
    return Path(str(resources.files("device").joinpath("scripts")))


def find_script(name: str, data_dir: Path | None) -> Path:
    """A script file by path, or by id: the box's own copy, an installed one, a packaged one
    (the first found; `device.content.resolve_circle` says which copy the box plays)."""
    from device.content import script_candidates
    from device.datafolder import DataFolder

    data = DataFolder(data_dir) if data_dir is not None else None
    found = script_candidates(name, data)
    if found:
        return found[0][0]
    dirs = [*(data.script_dirs() if data else ()), packaged_scripts_dir()]
    raise ScriptError(name, [Problem(N_("no such script (looked in %(folders)s)"),
                                     folders=", ".join(str(d) for d in dirs))])
