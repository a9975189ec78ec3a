"""firmware_config/: every fragment parses, builds do not fight over pins or the sound node."""

from __future__ import annotations

import configparser
import ctypes
import ctypes.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware_config"
BUILDS = sorted(p.name for p in (FW / "builds").iterdir() if p.is_dir())

# Header GPIOs each overlay takes (BCM numbers). An overlay missing here fails the test, so a
# new one cannot slip in without someone checking its pins.
OVERLAY_PINS = {
    "disable-bt": set(),
    "max98357a": {18, 19, 21, 4},  # 4 = SD_MODE unless no-sdmode
    "max98357a,no-sdmode": {18, 19, 21},
    "hifiberry-dac": {18, 19, 21},
    "googlevoicehat-soundcard": {16, 18, 19, 20, 21},
}
SOUND_NODE_OVERLAYS = {"max98357a", "hifiberry-dac", "googlevoicehat-soundcard"}
AVOID = {2, 3, 14, 15}  # I2C (fixed pull-ups) and the serial console
CARD_IDS = {  # what each build's ALSA names must be (ids set by the overlays or by udev)
    "i2s-amp-usb-mic": ("MAX98357A", "cbusb"),
    "i2s-amp-i2s-mic": ("sndrpigooglevoi", "sndrpigooglevoi"),
    "usb": ("cbusb", "cbusb"),
    "headphone-usb-mic": ("Headphones", "cbusb"),
}


def config_txt_lines(*paths: Path) -> list[tuple[str, str]]:
    """(key, value) pairs of config.txt files; fails on anything that is not one."""
    pairs = []
    for path in paths:
        for n, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                assert line in {"[all]", "[pi4]", "[pi5]"}, f"{path}:{n}: filter {line}"
                continue
            key, sep, value = line.partition("=")
            assert sep and key and value and " " not in key, f"{path}:{n}: {line!r}"
            pairs.append((key, value))
    return pairs


def claimed_pins(pairs: list[tuple[str, str]]) -> set[int]:
    pins: set[int] = set()
    for key, value in pairs:
        if key == "dtoverlay":
            assert value in OVERLAY_PINS, f"unknown overlay {value}: add its pins to the test"
            pins |= OVERLAY_PINS[value]
    return pins


def build_files(build: str) -> list[Path]:
    return [FW / "boot" / "config-base.txt", FW / "builds" / build / "config.txt"]


def test_builds_are_complete():
    assert set(BUILDS) == set(CARD_IDS)
    for build in BUILDS:
        for name in ("config.txt", "alsa-card.conf", "circlebox.yaml"):
            assert (FW / "builds" / build / name).is_file(), f"{build}/{name}"
        assert build in (FW / "README.md").read_text(), f"README does not mention {build}"


@pytest.mark.parametrize("build", BUILDS)
def test_config_txt_has_no_conflicting_overlays(build):
    pairs = config_txt_lines(*build_files(build))
    overlays = [v for k, v in pairs if k == "dtoverlay"]
    assert len(overlays) == len(set(overlays)), f"duplicate dtoverlay in {build}"
    sound = [o for o in overlays if o.split(",")[0] in SOUND_NODE_OVERLAYS]
    assert len(sound) <= 1, f"{build}: two overlays claim the sound node: {sound}"
    audio = [v for k, v in pairs if k == "dtparam" and v.startswith("audio=")]
    assert len(audio) == 1, f"{build}: say dtparam=audio=on or off exactly once"
    if sound:
        assert audio == ["audio=off"], f"{build}: I2S card with the on-board audio still on"


@pytest.mark.parametrize("build", BUILDS)
def test_button_and_led_pins_are_free(build):
    from device.config import load_config

    path = FW / "builds" / build / "circlebox.yaml"
    config = load_config(etc_path=path, admin_path=None, environ={})  # validates the layer too
    assert "map" in yaml.safe_load(path.read_text())["buttons"], "the build must set its own map"
    assert {"buttons.map", "leds"} <= set(config.protected), "the admin page must not move pins"
    taken = claimed_pins(config_txt_lines(*build_files(build))) | AVOID
    used = {f"button {b.name}": b.pin for b in config.buttons.map}
    used |= {f"LED {n}": getattr(config.leds, n) for n in ("status", "help")}
    clashes = {who: pin for who, pin in used.items() if pin in taken}
    assert not clashes, f"{build}: pins used by audio/I2C/serial: {clashes}"
    assert len(set(used.values())) == len(used)


def test_pin_table_matches_the_overlay_claims_we_document():
    # The I2S pins the README and docs/setup-a-box.md warn about.
    i2s = OVERLAY_PINS["googlevoicehat-soundcard"]
    assert 19 in i2s  # the package default help pin: why every build moves it
    for doc in (FW / "README.md", REPO / "docs" / "setup-a-box.md"):
        assert "GPIO 26" in doc.read_text(), doc


# --- ALSA -------------------------------------------------------------------------------------

ALSA_READ = """
import ctypes, sys
lib = ctypes.CDLL("libasound.so.2")
assert lib.snd_config_update() >= 0
top = ctypes.c_void_p.in_dll(lib, "snd_config")
for key in sys.argv[1:]:
    node, text = ctypes.c_void_p(), ctypes.c_char_p()
    if lib.snd_config_search(top, key.encode(), ctypes.byref(node)) < 0:
        print("MISSING")
    elif lib.snd_config_get_ascii(node, ctypes.byref(text)) < 0:
        print("COMPOUND")
    else:
        print(text.value.decode())
"""

needs_alsa = pytest.mark.skipif(
    shutil.which("aplay") is None or not ctypes.util.find_library("asound"),
    reason="alsa-utils/libasound missing (tools/install-system-deps.sh installs them)",
)


def alsa_home(tmp_path: Path, build: str, asound_text: str | None = None) -> dict[str, str]:
    """An environment whose ~/.asoundrc is what the box loads: card file, then asound.conf."""
    home = tmp_path / build
    home.mkdir()
    card = (FW / "builds" / build / "alsa-card.conf").read_text()
    asound = asound_text if asound_text is not None else (FW / "alsa" / "asound.conf").read_text()
    (home / ".asoundrc").write_text(card + "\n" + asound)
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def alsa_values(env: dict[str, str], *keys: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", ALSA_READ, *keys], env=env, capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout.split()


@needs_alsa
@pytest.mark.parametrize("build", BUILDS)
def test_asound_conf_loads_and_names_the_cards(tmp_path, build):
    env = alsa_home(tmp_path, build)
    listing = subprocess.run(["aplay", "-L"], env=env, capture_output=True, text=True, timeout=30)
    assert listing.returncode == 0 and "ALSA lib" not in listing.stderr, listing.stderr
    for pcm in ("circlebox_out", "circlebox_in", "default"):
        assert pcm in listing.stdout.split(), pcm
    speaker, mic = CARD_IDS[build]
    got = alsa_values(
        env,
        "pcm.default.playback.pcm", "pcm.default.capture.pcm",
        "pcm.circlebox_dmix.type", "pcm.circlebox_dmix.slave.pcm",
        "pcm.circlebox_dsnoop.type", "pcm.circlebox_dsnoop.slave.pcm",
        "pcm.circlebox_speaker_hw.type", "pcm.circlebox_speaker_hw.card",
        "pcm.circlebox_mic_hw.type", "pcm.circlebox_mic_hw.card",
        "pcm.circlebox_dmix.slave.rate",
    )
    assert got == ["circlebox_out", "circlebox_in", "dmix", "circlebox_speaker_hw", "dsnoop",
                   "circlebox_mic_hw", "hw", speaker, "hw", mic, "48000"]
    # Opening the speaker walks plug -> dmix -> hw and stops only at the missing card.
    play = subprocess.run(["aplay", "-q", "-D", "circlebox_out", "/dev/zero", "-d", "1"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert play.returncode != 0
    assert f"Cannot get card index for {speaker}" in play.stderr, play.stderr


@needs_alsa
def test_broken_asound_conf_is_detected(tmp_path):
    text = (FW / "alsa" / "asound.conf").read_text()
    broken = text.replace("pcm.circlebox_in {", "pcm.circlebox_in ", 1)
    env = alsa_home(tmp_path, BUILDS[0], broken)
    listing = subprocess.run(["aplay", "-L"], env=env, capture_output=True, text=True, timeout=30)
    assert "circlebox_out" not in listing.stdout or "ALSA lib" in listing.stderr


# --- network, users, mounts, logs ------------------------------------------------------------

def test_hotspot_template():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string((FW / "network" / "circlebox-hotspot.nmconnection").read_text())
    assert parser["connection"]["type"] == "wifi"
    assert parser["wifi"]["mode"] == "ap"
    assert parser["wifi"]["ssid"] == "@SSID@"
    assert parser["wifi-security"]["key-mgmt"] == "wpa-psk"
    assert parser["wifi-security"]["proto"] == "rsn"  # WPA2 only
    assert parser["wifi-security"]["psk"] == "@PASSPHRASE@"
    assert parser["ipv4"]["method"] == "shared"
    nm = configparser.ConfigParser(interpolation=None)
    nm.read_string((FW / "NetworkManager" / "conf.d" / "circlebox.conf").read_text())
    from device.firstboot import Firstboot

    assert nm["keyfile"]["path"] == str(Firstboot(Path("/var/lib/circlebox")).network_dir)


def hotspot_address() -> str:
    """The box's own address on its hotspot, from the profile NetworkManager gets."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string((FW / "network" / "circlebox-hotspot.nmconnection").read_text())
    return parser["ipv4"]["address1"].split("/")[0]


def test_docs_give_the_hotspot_address_and_the_admin_port():
    """Every http://<IPv4 address> a person is told to open is the hotspot's own address on the
    admin page's port (the docs once said 192.168.4.1; the hotspot is 10.42.0.1)."""
    port = yaml.safe_load((REPO / "device" / "defaults.yaml").read_text())["admin"]["port"]
    texts = [*REPO.glob("*.md"), *(REPO / "docs").rglob("*.md"), *FW.rglob("*.md"),
             FW / "network" / "circlebox-hotspot.nmconnection"]
    found = {}
    for path in texts:
        for url in re.findall(r"https?://\d+\.\d+\.\d+\.\d+(?::\d+)?", path.read_text()):
            found.setdefault(url, []).append(str(path.relative_to(REPO)))
    assert f"http://{hotspot_address()}:{port}" in found  # the check below would pass on nothing
    wrong = {url: where for url, where in found.items()
             if url not in (f"http://{hotspot_address()}:{port}", f"http://127.0.0.1:{port}")}
    assert not wrong, f"addresses that are not the hotspot's ({hotspot_address()}:{port}): {wrong}"


def test_journald_is_volatile():
    parser = configparser.ConfigParser()
    parser.read_string((FW / "journald.conf.d" / "circlebox.conf").read_text())
    assert parser["Journal"]["Storage"] == "volatile"


def test_read_only_root_leaves_other_mounts_alone():
    from device.firstboot import OVERLAY_PARAM

    assert OVERLAY_PARAM == "overlayroot=tmpfs:recurse=0"


def test_fstab_lines():
    rows = [x.split() for x in (FW / "fstab.circlebox").read_text().splitlines()
            if x.strip() and not x.startswith("#")]
    assert all(len(r) == 6 for r in rows), rows
    mounts = {r[1]: r for r in rows}
    data = mounts["/var/lib/circlebox"]
    assert data[0] == "LABEL=CBDATA" and data[2] == "ext4"
    assert "nofail" in data[3].split(",") and "noexec" in data[3].split(",")
    assert mounts["/tmp"][2] == "tmpfs"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd missing")
def test_sysusers_and_tmpfiles_apply_to_an_empty_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    subprocess.run(["systemd-sysusers", f"--root={root}",
                    str(FW / "sysusers.d" / "circlebox.conf")], check=True, capture_output=True)
    passwd = {line.split(":")[0]: line.split(":") for line in
              (root / "etc/passwd").read_text().splitlines()}
    assert passwd["circlebox"][2] == "940" and passwd["circlebox-admin"][2] == "941"
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in
              (root / "etc/group").read_text().splitlines()}
    assert "circlebox" in groups["audio"] and "circlebox" in groups["gpio"]
    assert "circlebox-admin" in groups["circlebox"]
    (root / "var/lib/circlebox").mkdir(parents=True)
    proc = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create",
                           str(FW / "tmpfiles.d" / "circlebox.conf")], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    secrets = (root / "var/lib/circlebox/secrets").stat()
    assert (secrets.st_mode & 0o777, secrets.st_uid, secrets.st_gid) == (0o750, 0, 941)
    assert (root / "var/lib/circlebox/network").stat().st_mode & 0o777 == 0o700


def test_udev_rules_are_well_formed():
    for rule in sorted((FW / "udev").glob("*.rules")):
        text = rule.read_text().replace("\\\n", " ")  # join continuation lines
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            for part in (p.strip() for p in line.split(",")):
                assert re.fullmatch(r'[A-Z_]+(\{[^}]+\})?\s*(==|!=|\+=|-=|:=|=)\s*"[^"]*"', part), (
                    rule, n, part)


# --- the technician's wiring tables ------------------------------------------------------------

BCM_TO_PHYSICAL = {2: 3, 3: 5, 4: 7, 17: 11, 27: 13, 22: 15, 10: 19, 9: 21, 11: 23, 0: 27,
                   5: 29, 6: 31, 13: 33, 19: 35, 26: 37, 14: 8, 15: 10, 18: 12, 23: 16, 24: 18,
                   25: 22, 8: 24, 7: 26, 1: 28, 12: 32, 16: 36, 20: 38, 21: 40}
GROUND_PINS = {6, 9, 14, 20, 25, 30, 34, 39}


def test_wiring_tables_match_the_header_and_the_config():
    doc = (REPO / "docs" / "setup-a-box.md").read_text()
    rows = re.findall(r"\|\s*GPIO (\d+)\s*\|\s*(\d+)\s*\|(?:\s*(\d+)[^|]*\|)?", doc)
    assert rows, "no wiring rows found"
    for gpio, pin, ground in rows:
        assert BCM_TO_PHYSICAL[int(gpio)] == int(pin), f"GPIO {gpio} is pin {pin}?"
        if ground:
            assert int(ground) in GROUND_PINS, f"pin {ground} is not a ground pin"
    documented = {int(g) for g, _, _ in rows}
    for build in BUILDS:
        data = yaml.safe_load((FW / "builds" / build / "circlebox.yaml").read_text())
        pins = {b["pin"] for b in data["buttons"]["map"]} | set(data["leds"].values())
        assert pins <= documented, f"{build}: pins missing from the wiring table"
