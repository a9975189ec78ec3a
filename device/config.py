"""Layered configuration: package defaults, /etc, the admin's file, then the environment.

Merged key by key and validated into frozen objects, so a typo in any layer is an error that
names the file and the key, never a silently ignored setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from device.actions import validate_action_name

ETC_CONFIG = Path("/etc/circlebox/config.yaml")
ADMIN_CONFIG_NAME = "admin-config.yaml"
ENV_PREFIX = "CIRCLEBOX_"


class ConfigError(ValueError):
    """A configuration layer is unreadable or invalid; the message names the file and key."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BoxSection(_Frozen):
    name: str = Field(min_length=1, max_length=64)
    site: str = Field(default="", max_length=120)


class PathsSection(_Frozen):
    data_dir: Path
    voices_dir: Path | None = None


class SessionSection(_Frozen):
    script: str = Field(min_length=1)


class AudioSection(_Frozen):
    sample_rate: int = Field(ge=8000, le=48000)
    buffer_samples: int = Field(ge=64, le=8192)
    volume: float = Field(ge=0.0, le=1.0)
    volume_cap: float = Field(ge=0.1, le=1.0)
    volume_step: float = Field(gt=0.0, le=0.5)
    loudness_lufs: float = Field(ge=-40.0, le=-6.0)
    driver: str | None = None
    system_voice: str = Field(default="en_US-joe-medium", min_length=1)  # the box's own prompts

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
    # Sections owned by later features are validated by their own modules; they are kept here
    # as plain mappings so a box with an older runtime still starts.
    listening: dict[str, Any] = Field(default_factory=dict)
    admin: dict[str, Any] = Field(default_factory=dict)
    dhis2: dict[str, Any] = Field(default_factory=dict)

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


def package_defaults() -> dict[str, Any]:
    text = resources.files("device").joinpath("defaults.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def merge(base: Mapping[str, Any], layer: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Merge `layer` into `base` key by key; a key unknown to `base` is an error naming `source`."""
    merged = dict(base)
    for key, value in layer.items():
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{key}'")
        if isinstance(base[key], dict) and base[key] and isinstance(value, dict):
            merged[key] = merge(base[key], value, f"{source}: {key}")
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
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from exc


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
    admin_path = admin_path or data_dir / ADMIN_CONFIG_NAME
    if admin_path.exists():
        admin = _read_yaml(admin_path)
        touched = _protected_keys_touched(admin, data.get("protected", ()))
        if touched:
            raise ConfigError(f"{admin_path}: protected keys cannot be set here: {', '.join(touched)}")
        data = merge(data, admin, str(admin_path))
    data = merge(data, env, "environment")
    return _validate(data, "configuration")


def validate_admin_layer(base: Config, layer: Mapping[str, Any], source: str) -> Config:
    """Check what the admin page wants to save before it is written (nothing is lost on error)."""
    touched = _protected_keys_touched(layer, base.protected)
    if touched:
        raise ConfigError(f"{source}: protected keys cannot be set here: {', '.join(touched)}")
    merged = merge(base.model_dump(mode="json"), layer, source)
    return _validate(merged, source)
