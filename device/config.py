"""Layered configuration: package defaults, /etc, the admin's file, then the environment.

Merged key by key and validated into frozen objects, so a typo in any layer is an error that
names the file and the key, never a silently ignored setting. Every section is a model (the
feature sections listening, admin and dhis2 are in `device.config_sections`); the admin page
checks what it saves with `validate_admin_layer`, so the box and the page share one set of rules.
A map of the user's own keys (DHIS2 data elements, spoken phrases) is replaced whole by a layer.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from device.actions import validate_action_name
from device.config_sections import AdminSection, Dhis2Section, FrozenSection, ListeningSection
from device.datafolder import DataFolder

ETC_CONFIG = Path("/etc/circlebox/config.yaml")
ADMIN_CONFIG_NAME = DataFolder(Path("/")).admin_config.name  # <data_dir>/admin-config.yaml
ENV_PREFIX = "CIRCLEBOX_"
# Keys the admin layer may never set, whatever /etc says: device names and folders reach
# programs (arecord -D, SDL's audio driver, the folders every service and the updater read, the
# speech model the runtime loads), and `protected` says what the admin layer may change. Only
# /etc/circlebox/config.yaml or the environment sets them (docs/security.md).
ADMIN_FORBIDDEN = ("paths", "protected", "audio.driver", "listening.device", "listening.commands.model_path")


class ConfigError(ValueError):
    """A configuration layer is unreadable or invalid; the message names the file and key.

    `problems` holds (dotted key, plain message) pairs, so a form can show each next to its
    field ("dhis2.data_elements.attendance", "'abc' is not a DHIS2 code: ...").
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)


_Frozen = FrozenSection


class BoxSection(_Frozen):
    name: str = Field(min_length=1, max_length=64)
    site: str = Field(default="", max_length=120)


class PathsSection(_Frozen):
    data_dir: Path
    voices_dir: Path | None = None


class SessionSection(_Frozen):
    script: str = Field(min_length=1)
    # a course (device.course): when set, where the course stands decides the circle
    course: str | None = None

    @field_validator("course")
    @classmethod
    def _course_id(cls, value: str | None) -> str | None:
        from device.script import STEP_ID

        if value is not None and not STEP_ID.match(value):
            raise ValueError(
                f"'{value}' is not a course id: use lower-case letters, digits, - and _ (up to 40), "
                "starting with a letter or digit"
            )
        return value


class AudioSection(_Frozen):
    sample_rate: int = Field(ge=8000, le=48000)
    buffer_samples: int = Field(ge=64, le=8192)
    volume: float = Field(ge=0.0, le=1.0)
    volume_cap: float = Field(ge=0.1, le=1.0)
    volume_step: float = Field(gt=0.0, le=0.5)
    loudness_lufs: float = Field(ge=-40.0, le=-6.0)
    driver: str | None = None
    system_voice: str = Field(default="en_US-joe-medium", min_length=1)  # the box's own prompts
    # the language pack the box's own prompts are played in (device.language_packs)
    system_language: str = Field(default="en", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")

    @model_validator(mode="after")
    def _volume_under_cap(self) -> AudioSection:
        if self.volume > self.volume_cap:
            raise ValueError(f"volume {self.volume} is above volume_cap {self.volume_cap}")
        return self


class ButtonSpec(_Frozen):
    name: str = Field(min_length=1, max_length=32)
    pin: int = Field(ge=0, le=27)
    press: str
    hold: str | None = None

    @field_validator("press", "hold")
    @classmethod
    def _known_action(cls, value: str | None) -> str | None:
        if value is not None:
            validate_action_name(value)
        return value


class ButtonsSection(_Frozen):
    pin_factory: Literal["auto", "lgpio", "mock"] = "auto"
    hold_s: float = Field(ge=0.3, le=5.0)
    bounce_s: float = Field(ge=0.0, le=0.5)
    map: tuple[ButtonSpec, ...]

    @model_validator(mode="after")
    def _unique(self) -> ButtonsSection:
        pins = [b.pin for b in self.map]
        names = [b.name for b in self.map]
        for label, values in (("pin", pins), ("name", names)):
            dupes = sorted({str(v) for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"two buttons share the {label} {', '.join(dupes)}")
        return self


class LedsSection(_Frozen):
    status: int | None = Field(default=None, ge=0, le=27)
    help: int | None = Field(default=None, ge=0, le=27)


class Config(_Frozen):
    box: BoxSection
    paths: PathsSection
    session: SessionSection
    audio: AudioSection
    buttons: ButtonsSection
    leds: LedsSection
    protected: tuple[str, ...] = ()
    listening: ListeningSection
    admin: AdminSection
    dhis2: Dhis2Section
    # The layers under the admin's file and the environment layer, as load_config merged them:
    # validate_admin_layer puts a new admin file between them exactly as the next load will.
    _below_admin: dict[str, Any] | None = PrivateAttr(default=None)
    _environment: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _pins_distinct(self) -> Config:
        used = {b.pin: f"button {b.name}" for b in self.buttons.map}
        for led_name in ("status", "help"):
            pin = getattr(self.leds, led_name)
            if pin is not None and pin in used:
                raise ValueError(f"LED {led_name} uses pin {pin}, already used by {used[pin]}")
        return self

    @property
    def data_dir(self) -> Path:
        return self.paths.data_dir

    @property
    def voice_dirs(self) -> tuple[Path, ...]:
        """Where extra Piper voices are looked for (the packaged ones are always found):
        `paths.voices_dir`, then the voices a voice bundle installed."""
        installed = DataFolder(self.paths.data_dir).installed_voices
        configured = [self.paths.voices_dir] if self.paths.voices_dir else []
        return (*configured, *([installed] if installed.is_dir() else []))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, not {type(data).__name__}")
    return data


def read_layer(path: Path) -> dict[str, Any]:
    """One layer file as a mapping ({} when it does not exist); ConfigError when unreadable."""
    return _read_yaml(path) if path.exists() else {}


def package_defaults() -> dict[str, Any]:
    text = resources.files("device").joinpath("defaults.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _annotation_parts(annotation: Any) -> list[Any]:
    """The types inside X | None, Optional[X] and Annotated[X, ...]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _annotation_parts(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [p for arg in typing.get_args(annotation) for p in _annotation_parts(arg)]
    return [annotation]


def map_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> frozenset[tuple[str, ...]]:
    """Keys whose value is a map of the user's own keys (a dict field), found from the model.

    Such a map is data, not a schema: a layer's map replaces the one beneath it whole, so a
    new key is welcome and a key left out is gone (a removed DHIS2 code, a deleted phrase).
    """
    found: set[tuple[str, ...]] = set()
    for name, field in model.model_fields.items():
        for part in _annotation_parts(field.annotation):
            if isinstance(part, type) and issubclass(part, BaseModel):
                found |= map_paths(part, (*prefix, name))
            elif typing.get_origin(part) in (dict, Mapping):
                found.add((*prefix, name))
    return frozenset(found)


def merge(
    base: Mapping[str, Any],
    layer: Mapping[str, Any],
    source: str,
    *,
    new_keys: bool = False,
    _path: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Merge `layer` into `base` key by key; a key unknown to `base` is an error naming `source`.

    Maps of user keys (`map_paths(Config)`, like dhis2.data_elements) are replaced whole.
    `new_keys=True` merges two layers of one file, where either may hold keys the other lacks.
    """
    merged = dict(base)
    for key, value in layer.items():
        path = (*_path, str(key))
        if key not in base and not new_keys:
            known = ", ".join(sorted(str(k) for k in base))
            raise ConfigError(
                f"{source}: unknown key '{key}'",
                [(".".join(path), f"unknown key '{key}' (known: {known})")],
            )
        old = base.get(key)
        if path not in CONFIG_MAPS and isinstance(old, dict) and (old or new_keys) and isinstance(value, dict):
            merged[key] = merge(old, value, f"{source}: {key}", new_keys=new_keys, _path=path)
        else:
            merged[key] = value
    return merged


def env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    """CIRCLEBOX_AUDIO__VOLUME=0.5 -> {"audio": {"volume": 0.5}} (values parsed as YAML)."""
    layer: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = name[len(ENV_PREFIX):].lower().split("__")
        node = layer
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment: {name} sets inside {key}, which another variable sets to a value")
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw != "" else None
        except (yaml.YAMLError, RecursionError) as exc:
            raise ConfigError(f"environment: {name} is not a valid YAML value") from exc
    return layer


def _protected_keys_touched(layer: Mapping[str, Any], protected: Any) -> list[str]:
    if not isinstance(protected, list | tuple) or not all(isinstance(p, str) for p in protected):
        raise ConfigError("protected: must be a list of dotted key names, such as audio.volume_cap")
    touched = []
    for dotted in protected:
        node: Any = layer
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            touched.append(dotted)
    return touched


def _validate(data: Mapping[str, Any], source: str) -> Config:
    try:
        return Config.model_validate(data)
    except RecursionError as exc:  # a value that refers to itself (a YAML alias loop)
        raise ConfigError(f"{source}: a value is nested too deeply (or refers to itself)") from exc
    except ValidationError as exc:
        raise _validation_error(exc, source) from exc


def _validation_error(exc: ValidationError, source: str, section: str = "") -> ConfigError:
    """One ConfigError for all of pydantic's findings: "source: dotted.key: message; ..."."""
    problems = []
    for err in exc.errors():
        loc = [section] if section else []
        loc += [str(p) for p in err["loc"] if p != "[key]"]  # a bad map key: name the key itself
        problems.append((".".join(loc) or "(top level)", err["msg"].removeprefix("Value error, ")))
    return ConfigError(f"{source}: " + "; ".join(f"{where}: {msg}" for where, msg in problems), problems)


def load_config(
    etc_path: Path | None = ETC_CONFIG,
    admin_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the box's configuration from every layer, most general first.

    The admin layer lives in the data directory, which itself may be set by an earlier layer.
    Protected keys (listed in the /etc layer) may not be set by the admin layer.
    """
    environ = os.environ if environ is None else environ
    data = package_defaults()
    if etc_path is not None and etc_path.exists():
        data = merge(data, _read_yaml(etc_path), str(etc_path))
    env = env_layer(environ)
    if overrides:
        data = merge(data, overrides, "command line")
    paths = merge(data, env, "environment").get("paths")
    raw_dir = paths.get("data_dir") if isinstance(paths, dict) else None
    if not isinstance(raw_dir, str) or not raw_dir:
        raise ConfigError(f"paths.data_dir: must be a directory path, not {raw_dir!r}")
    data_dir = Path(raw_dir)
    admin_path = admin_path or DataFolder(data_dir).admin_config
    below_admin = data
    if admin_path.exists():
        admin = _read_yaml(admin_path)
        _refuse_protected(admin, data.get("protected", ()), str(admin_path))
        data = merge(data, admin, str(admin_path))
    data = merge(data, env, "environment")
    return _with_layers(_validate(data, "configuration"), below_admin, env)


def _refuse_protected(layer: Mapping[str, Any], protected: Any, source: str) -> None:
    forbidden = _protected_keys_touched(layer, ADMIN_FORBIDDEN)
    if forbidden:
        raise ConfigError(
            f"{source}: these keys can only be set in {ETC_CONFIG} or the environment, never in "
            f"the admin page's file: {', '.join(forbidden)}",
            [(key, f"device names and folders are set in {ETC_CONFIG} only") for key in forbidden],
        )
    touched = _protected_keys_touched(layer, protected)
    if touched:
        raise ConfigError(
            f"{source}: protected keys cannot be set here: {', '.join(touched)}",
            [(key, "locked by the technician's main config") for key in touched],
        )


def _with_layers(config: Config, below_admin: dict[str, Any], environment: dict[str, Any]) -> Config:
    config._below_admin = below_admin
    config._environment = environment
    return config


def validate_admin_layer(base: Config, layer: Mapping[str, Any], source: str) -> Config:
    """The config the box will have with `layer` as its admin file: checked before it is written
    (nothing is lost on error). `layer` is the whole admin file, not a change to it."""
    _refuse_protected(layer, base.protected, source)
    if base._below_admin is None:  # a Config not made by load_config: the best we have
        return _validate(merge(base.model_dump(mode="json"), layer, source), source)
    merged = merge(merge(base._below_admin, layer, source), base._environment, "environment")
    return _with_layers(_validate(merged, source), base._below_admin, base._environment)


def section_model(name: str, values: Mapping[str, Any] | None, source: str = "") -> Any:
    """One section (like `listening`) from `values` over the packaged defaults, validated.

    For callers that hold a bare section (tests, benches, `listening_settings({...})`).
    """
    model = Config.model_fields[name].annotation
    source = source or "configuration"
    if not isinstance(values, Mapping | None):
        raise ConfigError(f"{source}: {name}: must be a mapping of settings", [(name, "must be a mapping of settings")])
    merged = merge(package_defaults()[name], values or {}, f"{source}: {name}", _path=(name,))
    try:
        return model.model_validate(merged)
    except RecursionError as exc:
        raise ConfigError(f"{source}: {name}: a value is nested too deeply") from exc
    except ValidationError as exc:
        raise _validation_error(exc, source, name) from exc


CONFIG_MAPS = map_paths(Config)
