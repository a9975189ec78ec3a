"""Layered configuration: defaults, /etc, the admin's file, environment; errors name the key."""

from __future__ import annotations

import pytest

from device.config import CONFIG_MAPS, ConfigError, load_config, validate_admin_layer
from device.config_sections import DEFAULT_PHRASES


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


# -- the feature sections (listening, admin, dhis2) are models like the rest ---------------------


def _saved(tmp_path, admin_layer: str):
    (tmp_path / "admin-config.yaml").write_text(admin_layer)
    return load_config(etc_path=None, environ={}, overrides={"paths": {"data_dir": str(tmp_path)}})


def test_maps_of_user_keys_are_found_from_the_model():
    assert {("dhis2", "data_elements"), ("dhis2", "courses"), ("listening", "commands", "phrases")} == CONFIG_MAPS


def test_a_new_data_element_is_welcome_after_the_first_was_saved(tmp_path):
    """The admin page's second save: before the fix, the first map was taken as a schema."""
    base = _saved(tmp_path, "dhis2: {org_unit: ImspTQPwCqd, data_elements: {sessions: CbxSess0001}}\n")
    base = base.model_validate(base.model_dump())  # a Config known only by its values
    layer = {"dhis2": {"org_unit": "ImspTQPwCqd",
                       "data_elements": {"sessions": "CbxSess0001", "attendance": "CbxAtt00001"}}}
    config = validate_admin_layer(base, layer, "admin page")
    assert config.dhis2.data_elements == {"sessions": "CbxSess0001", "attendance": "CbxAtt00001"}
    again = validate_admin_layer(config, {"dhis2": {"data_elements": {"attendance": "CbxAtt00001"}}},
                                 "admin page")
    assert again.dhis2.data_elements == {"attendance": "CbxAtt00001"}  # a map is replaced whole


def test_a_new_phrase_is_welcome_after_the_first_was_saved(tmp_path):
    base = _saved(tmp_path, "listening: {commands: {phrases: {next step: next}}}\n")
    base = base.model_validate(base.model_dump())  # a Config known only by its values
    layer = {"listening": {"commands": {"phrases": {"next step": "next", "please move on": "next"}}}}
    config = validate_admin_layer(base, layer, "admin page")
    assert config.listening.commands.phrases == {"next step": "next", "please move on": "next"}


def test_a_layer_map_replaces_the_one_beneath(tmp_path):
    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths: {{data_dir: {tmp_path}}}\ndhis2: {{data_elements: {{sessions: CbxSess0001}}}}\n")
    (tmp_path / "admin-config.yaml").write_text("dhis2: {data_elements: {minutes: CbxMinu0001}}\n")
    assert load_config(etc_path=etc, environ={}).dhis2.data_elements == {"minutes": "CbxMinu0001"}


def test_what_the_admin_file_no_longer_says_is_gone_after_validation(tmp_path):
    """The config checked is the one the next load makes, not the old one with changes on top."""
    base = _saved(tmp_path, "dhis2: {data_set: CbxDataSet1}\n")
    assert base.dhis2.data_set == "CbxDataSet1"
    assert validate_admin_layer(base, {}, "admin page").dhis2.data_set is None


@pytest.mark.parametrize("layer, key", [
    ("listening: {speach_start_s: 0.3}\n", "listening.speach_start_s"),
    ("listening: {commands: {langauge: ko}}\n", "listening.commands.langauge"),
    ("dhis2: {data_element: {sessions: CbxSess0001}}\n", "dhis2.data_element"),
    ("admin: {hosts: [a]}\n", "admin.hosts"),
])
def test_unknown_keys_in_fixed_sections_stay_errors(tmp_path, layer, key):
    with pytest.raises(ConfigError, match="unknown key") as caught:
        _saved(tmp_path, layer)
    assert caught.value.problems[0][0] == key


@pytest.mark.parametrize("code", ["ImspTQPwCqd", "CbxSess0001", "a1234567890"])
def test_dhis2_codes_that_are_dhis2_uids_are_taken(tmp_path, code):
    assert _saved(tmp_path, f"dhis2: {{org_unit: {code}}}\n").dhis2.org_unit == code


@pytest.mark.parametrize("layer, key", [
    ("dhis2: {org_unit: abc}\n", "dhis2.org_unit"),
    ("dhis2: {org_unit: 1mspTQPwCqd}\n", "dhis2.org_unit"),  # must start with a letter
    ("dhis2: {org_unit: ImspTQPwCqdX}\n", "dhis2.org_unit"),  # 12 characters
    ("dhis2: {org_unit: Imsp_QPwCqd}\n", "dhis2.org_unit"),
    ("dhis2: {data_elements: {attendance: abc}}\n", "dhis2.data_elements.attendance"),
    ("dhis2: {category_option_combo: CBX_SESSIONS}\n", "dhis2.category_option_combo"),
    ("dhis2: {attribute_option_combo: x}\n", "dhis2.attribute_option_combo"),
    ("dhis2: {data_set: '12345678901'}\n", "dhis2.data_set"),
])
def test_dhis2_codes_that_are_not_dhis2_uids_are_refused_in_plain_words(tmp_path, layer, key):
    with pytest.raises(ConfigError) as caught:
        _saved(tmp_path, layer)
    where, message = caught.value.problems[0]
    assert where == key
    assert "is not a DHIS2 code: codes are 11 letters and digits, starting with a letter" in message


def test_a_data_element_for_something_the_box_does_not_count_is_refused(tmp_path):
    with pytest.raises(ConfigError) as caught:
        _saved(tmp_path, "dhis2: {data_elements: {smiles: CbxSmil0001}}\n")
    assert caught.value.problems[0][0] == "dhis2.data_elements.smiles"
    assert "'smiles' is not something the box counts" in caught.value.problems[0][1]


def test_changing_the_language_brings_its_built_in_phrases(tmp_path):
    config = _saved(tmp_path, "listening: {commands: {language: ko}}\n")
    assert config.listening.commands.phrases == DEFAULT_PHRASES["ko"]
    english = validate_admin_layer(config, {}, "admin page")
    assert english.listening.commands.phrases == DEFAULT_PHRASES["en"]


def test_admin_section_is_a_model_with_its_defaults(tmp_path):
    config = _saved(tmp_path, "admin: {allowed_hosts: [box.clinic.lan, 10.1.2.3]}\n")
    assert config.admin.allowed_hosts == ("box.clinic.lan", "10.1.2.3")
    assert (config.admin.host, config.admin.port, config.admin.https) == ("0.0.0.0", 8080, False)
    with pytest.raises(ConfigError) as caught:
        _saved(tmp_path, "admin: {allowed_hosts: [ok.lan, 'bad_host!']}\n")
    assert caught.value.problems == (("admin.allowed_hosts.1", "'bad_host!' is not a host name or IP address"),)


# -- issue 12: device names and folders never come from the admin layer --------------------------

HOSTILE_DEVICE = 'file:"|touch /tmp/circlebox-pwned",raw'  # the review's: arecord ran the command


@pytest.mark.parametrize(
    ("layer", "key"),
    [
        ("listening: {device: 'hw:1,0'}\n", "listening.device"),
        (f"listening: {{device: '{HOSTILE_DEVICE}'}}\n", "listening.device"),
        ("audio: {driver: alsa}\n", "audio.driver"),
        ("paths: {data_dir: /tmp/elsewhere}\n", "paths"),
        ("paths: {voices_dir: /tmp/voices}\n", "paths"),
        ("listening: {commands: {model_path: /tmp/model}}\n", "listening.commands.model_path"),
        ("protected: []\n", "protected"),
    ],
)
def test_the_admin_layer_can_never_set_device_names_or_folders(tmp_path, layer, key):
    """Even with nothing listed in `protected`: only /etc or the environment may set them."""
    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths: {{data_dir: {tmp_path}}}\n")
    (tmp_path / "admin-config.yaml").write_text(layer)
    with pytest.raises(ConfigError) as caught:
        load_config(etc_path=etc, environ={})
    assert f"never in the admin page's file: {key}" in str(caught.value)
    assert caught.value.problems[0][0] == key
    (tmp_path / "admin-config.yaml").unlink()
    base = load_config(etc_path=etc, environ={})
    import yaml

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_admin_layer(base, yaml.safe_load(layer), "admin page")


def test_etc_and_the_environment_still_set_the_microphone(tmp_path):
    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths: {{data_dir: {tmp_path}}}\nlistening: {{device: 'plughw:CARD=Device,DEV=0'}}\n")
    assert load_config(etc_path=etc, environ={}).listening.device == "plughw:CARD=Device,DEV=0"
    env = {"CIRCLEBOX_LISTENING__DEVICE": "hw:1,0"}
    assert load_config(etc_path=etc, environ=env).listening.device == "hw:1,0"


@pytest.mark.parametrize(
    "name", ["default", "hw:1,0", "hw:1", "plughw:1,0", "plughw:CARD=Name,DEV=0", "sysdefault:CARD=x",
             "dsnoop:CARD=sndrpii2scard,DEV=0", "circlebox_in"],
)
def test_sound_card_names_are_accepted(tmp_path, name):
    env = {"CIRCLEBOX_LISTENING__DEVICE": name, "CIRCLEBOX_PATHS__DATA_DIR": str(tmp_path)}
    assert load_config(etc_path=None, environ=env).listening.device == name


@pytest.mark.parametrize(
    "name",
    [HOSTILE_DEVICE, "tee:default,'/tmp/room.raw',raw", "file:/tmp/room.raw", "plug:file",
     "plug:'tee:default,/tmp/x'", "hw:1,0 ", "hw:1:0", 'hw:"1"', "hw:/dev/snd/pcmC0D0c",
     "default\n", "hw:" + "1," * 60 + "0", "asym:x"],
)
def test_anything_but_a_card_name_is_refused_by_the_model(name):
    """The ListeningSection model itself refuses it, so no layer (not even /etc) can set it."""
    from device.config import section_model

    with pytest.raises(ConfigError, match=r"listening\.device: .*is not a sound card name"):
        section_model("listening", {"device": name})


def test_the_reviews_device_is_refused_from_etc_too(tmp_path):
    etc = tmp_path / "etc.yaml"
    etc.write_text(f"paths: {{data_dir: {tmp_path}}}\nlistening: {{device: '{HOSTILE_DEVICE}'}}\n")
    with pytest.raises(ConfigError, match=r"listening\.device: .*plugins such as file or tee"):
        load_config(etc_path=etc, environ={})
