"""Hostile configuration layers (an /etc file, the admin's file, the environment, the command
line): the loader answers with a Config or a `ConfigError`, never a crash."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
import yaml
from fuzzing import fuzz_settings
from hypothesis import example, given
from hypothesis import strategies as st

from device.config import (
    ADMIN_CONFIG_NAME,
    Config,
    ConfigError,
    load_config,
    package_defaults,
    validate_admin_layer,
)
from device.usage import DHIS2_MEASURES

FUZZ = fuzz_settings(60)
DEFAULTS = package_defaults()
SECTION_KEYS = {section: sorted(value) if isinstance(value, dict) else [] for section, value in DEFAULTS.items()}
KNOWN = sorted(DEFAULTS) + [k for keys in SECTION_KEYS.values() for k in keys]

weird_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), weird_text,
    st.sampled_from(["mock", "auto", "next", "goto:share", "1e309", "/tmp/x", "", "[", "{a: 1}"]),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN), weird_text), children, max_size=3),
    ),
    max_leaves=12,
)


@st.composite
def near_layers(draw):
    """A layer shaped like the real sections, with a few values swapped for junk."""
    layer = {}
    for section in draw(st.lists(st.sampled_from(sorted(DEFAULTS)), max_size=3, unique=True)):
        keys = SECTION_KEYS[section]
        if keys and draw(st.booleans()):
            layer[section] = {k: draw(trees) for k in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))}
        else:
            layer[section] = draw(trees)
    return layer


layers = st.one_of(st.none(), trees, near_layers())
env_names = st.one_of(
    st.sampled_from([f"CIRCLEBOX_{s.upper()}__{k.upper()}" for s, keys in SECTION_KEYS.items() for k in keys]),
    st.builds(lambda a, b: f"CIRCLEBOX_{a}__{b}", weird_text, weird_text),
    st.sampled_from(["CIRCLEBOX_AUDIO__VOLUME__X", "CIRCLEBOX___", "CIRCLEBOX_A__B__C__D",
                     "CIRCLEBOX_PATHS__DATA_DIR"]),
)
env_values = st.one_of(weird_text, st.sampled_from(["", "[", "{", "0.5", "- a", "{x: 1}", "null", "[1, 2]"]))
environs = st.dictionaries(env_names, env_values, max_size=4)


def load(etc, admin, environ, overrides, *, raw_etc=None, raw_admin=None) -> Config | None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        etc_path = tmp / "etc.yaml"
        data = tmp / "data"
        data.mkdir()
        if raw_etc is not None:
            etc_path.write_text(raw_etc, encoding="utf-8")
        elif etc is not None:
            etc_path.write_text(yaml.safe_dump(etc, allow_unicode=True), encoding="utf-8")
        if raw_admin is not None:
            (data / ADMIN_CONFIG_NAME).write_text(raw_admin, encoding="utf-8")
        elif admin is not None:
            (data / ADMIN_CONFIG_NAME).write_text(yaml.safe_dump(admin, allow_unicode=True), encoding="utf-8")
        environ = {"CIRCLEBOX_PATHS__DATA_DIR": str(data), **environ}
        try:
            config = load_config(etc_path=etc_path, environ=environ,
                                 overrides=overrides if isinstance(overrides, dict) else None)
        except ConfigError as exc:
            assert str(exc).strip()
            return None
        assert isinstance(config, Config)
        return config


@FUZZ
@given(layers, layers, environs, layers)
def test_random_layers(etc, admin, environ, overrides):
    load(etc, admin, environ, overrides)


@FUZZ
@given(st.text(max_size=200), st.text(max_size=200))
@example("[", "")
@example("audio: [", "{")
@example("- 1", "a: &a [*a]")
@example("audio: {volume: 1e999}", "")
def test_random_text_files(etc_text, admin_text):
    load(None, None, {}, None, raw_etc=etc_text, raw_admin=admin_text)


# -- regressions found by the fuzz above (each crashed with a non-ConfigError before the fix) ------


@pytest.mark.parametrize("environ", [
    {"CIRCLEBOX_AUDIO__VOLUME": "0.5", "CIRCLEBOX_AUDIO__VOLUME__X": "1"},  # a value, then a section
    {"CIRCLEBOX_PATHS__DATA_DIR": "{x: 1}"},  # data_dir not a path
    {"CIRCLEBOX_PATHS__DATA_DIR": "[1]"},
    {"CIRCLEBOX_PATHS__DATA_DIR": "null"},
    {"CIRCLEBOX_PATHS": "x", "CIRCLEBOX_PATHS__DATA_DIR__A": "1"},
])
def test_environment_of_the_wrong_shape_is_a_config_error(tmp_path, environ):
    with pytest.raises(ConfigError):
        load_config(etc_path=None, environ=environ)


@pytest.mark.parametrize("etc", [
    {"protected": 5}, {"protected": [["a"]]}, {"protected": [None]}, {"paths": None}, {"paths": "x"},
    {"paths": {"data_dir": 3}},
])
def test_etc_layer_of_the_wrong_shape_is_a_config_error(tmp_path, etc):
    etc_path = tmp_path / "etc.yaml"
    etc_path.write_text(yaml.safe_dump(etc), encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    (data / ADMIN_CONFIG_NAME).write_text("box: {name: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(etc_path=etc_path, environ={}, overrides={"paths": {"data_dir": str(data)}}
                    if "paths" not in etc else None)


def test_a_valid_layer_still_loads(tmp_path):
    """The fuzz must not pass because everything is refused."""
    layer = copy.deepcopy({"audio": {"volume": 0.4}})
    config = load(layer, None, {}, None)
    assert config is not None and config.audio.volume == 0.4


# -- maps of the user's own keys: saved again and again, each save is what the box then has -------

uids = st.from_regex(r"\A[A-Za-z][A-Za-z0-9]{10}\Z")
element_maps = st.dictionaries(st.sampled_from(sorted(DHIS2_MEASURES)), uids, max_size=4)
phrase_maps = st.dictionaries(
    st.lists(st.sampled_from(["please", "move", "on", "next", "step", "again", "say"]), min_size=2,
             max_size=3).map(" ".join),
    st.sampled_from(["next", "repeat", "pause", "help"]), min_size=1, max_size=4)


@FUZZ
@given(st.lists(st.tuples(element_maps, phrase_maps), min_size=1, max_size=4))
def test_saving_maps_again_and_again_keeps_the_last(saves):
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(etc_path=None, environ={}, overrides={"paths": {"data_dir": tmp}})
        for elements, phrases in saves:
            layer = {"dhis2": {"data_elements": elements},
                     "listening": {"commands": {"phrases": phrases}}}
            config = validate_admin_layer(config, layer, "admin page")
            assert config.dhis2.data_elements == elements
            assert config.listening.commands.phrases == phrases
            # the same, for a Config known only by its values (no layers behind it)
            config = Config.model_validate(config.model_dump())
