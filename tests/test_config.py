"""Layered configuration: defaults, /etc, the admin's file, environment; errors name the key."""

from __future__ import annotations

import pytest

from device.config import ConfigError, load_config, validate_admin_layer


def test_layers_merge_key_by_key_in_order(tmp_path):
    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths: {{data_dir: {tmp_path}}}\naudio: {{volume: 0.5}}\nbox: {{name: clinic-a}}\n")
    (tmp_path / "admin-config.yaml").write_text("audio: {volume: 0.6}\nbox: {site: Room 2}\n")
    config = load_config(etc_path=etc, environ={"CIRCLEBOX_AUDIO__VOLUME": "0.4"})
    assert config.audio.volume == 0.4  # environment wins
    assert config.box.name == "clinic-a" and config.box.site == "Room 2"
    assert config.audio.volume_cap == 0.9  # untouched default


def test_unknown_key_names_the_file_and_key(tmp_path):
    etc = tmp_path / "etc.yaml"
    etc.write_text("audio: {volumee: 0.5}\n")
    with pytest.raises(ConfigError, match=r"etc.yaml: audio: unknown key 'volumee'"):
        load_config(etc_path=etc, environ={})


def test_invalid_value_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"audio: volume 0.95 is above volume_cap 0.9"):
        load_config(etc_path=None, environ={"CIRCLEBOX_AUDIO__VOLUME": "0.95",
                                            "CIRCLEBOX_PATHS__DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"buttons.map.0.press"):
        load_config(etc_path=None, overrides={"buttons": {"map": [{"name": "a", "pin": 5, "press": "jump"}]}},
                    environ={})


def test_protected_keys_cannot_come_from_the_admin_file(tmp_path):
    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths: {{data_dir: {tmp_path}}}\nprotected: [audio.volume_cap, buttons]\n")
    (tmp_path / "admin-config.yaml").write_text("audio: {volume_cap: 1.0}\n")
    with pytest.raises(ConfigError, match=r"protected keys cannot be set here: audio\.volume_cap"):
        load_config(etc_path=etc, environ={})
    (tmp_path / "admin-config.yaml").write_text("audio: {volume: 0.3}\n")
    base = load_config(etc_path=etc, environ={})
    assert base.audio.volume == 0.3
    with pytest.raises(ConfigError, match="buttons"):
        validate_admin_layer(base, {"buttons": {"hold_s": 2}}, "admin page")


def test_pin_clash_between_led_and_button_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="LED status uses pin 5, already used by button next"):
        load_config(etc_path=None, environ={}, overrides={"leds": {"status": 5}})
