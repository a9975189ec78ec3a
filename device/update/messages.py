"""What the box says during an update, by code: the same codes are spoken, printed and shown on
the admin page, so a technician on the phone can say "it said U06" and be understood.

The real announcer plays pre-rendered prompts (the box has no TTS at update time), so every text
here is fixed; numbers are spoken digit by digit from the `digit:N` prompts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    code: str
    key: str
    text: str
    advice: str = ""  # what the technician should do (docs, admin page), not spoken


# Progress: spoken while the box works.
CHECKING = "S01"
COPYING = "S02"
REMOVE_STICK = "S03"
INSTALLING = "S04"
STILL_WORKING = "S05"
RESTARTING = "S06"
DATA_SAVED = "S07"
DATA_NOT_SAVED = "S08"
NO_UPDATE = "S09"

# Results: one per outcome of one bundle. U00 and U07 and U14 are not failures.
UPDATED = "U00"
WRONG_DEVICE = "U01"
DAMAGED = "U02"
UNSIGNED = "U03"
UNKNOWN_KEY = "U04"
BAD_SIGNATURE = "U05"
OLDER = "U06"
ALREADY_INSTALLED = "U07"
REJECTED_BEFORE = "U08"
NEEDS_EARLIER = "U09"
NO_SPACE = "U10"
SELF_TEST_FAILED = "U11"
ROLLED_BACK = "U12"
STICK_ERROR = "U13"
STAGED = "U14"
INTERNAL_ERROR = "U15"

_ALL = (
    Message(CHECKING, "checking", "Checking the update."),
    Message(COPYING, "copying", "Copying. Do not remove the stick."),
    Message(REMOVE_STICK, "remove_stick", "You can remove the stick."),
    Message(INSTALLING, "installing", "Installing. Keep the power on."),
    Message(STILL_WORKING, "still_working", "Still working."),
    Message(RESTARTING, "restarting", "Restarting the box."),
    Message(DATA_SAVED, "data_saved", "The usage data is saved on the stick."),
    Message(
        DATA_NOT_SAVED,
        "data_not_saved",
        "The usage data could not be saved on the stick.",
        "Try another stick with free space; the data stays on the box until a copy is checked.",
    ),
    Message(NO_UPDATE, "no_update", "There is no update on the stick."),
    Message(UPDATED, "updated", "Updated to version {version}."),
    Message(
        WRONG_DEVICE,
        "wrong_device",
        "This update is for a different device.",
        "Build the bundle with this box's compatible string (see `circlebox bundle status`).",
    ),
    Message(
        DAMAGED,
        "damaged",
        "The update file is damaged.",
        "Copy the bundle to the stick again from the original; check it with `circlebox bundle verify`.",
    ),
    Message(
        UNSIGNED,
        "unsigned",
        "The update is not signed.",
        "Build it with `circlebox bundle build --key`; unsigned bundles are never installed.",
    ),
    Message(
        UNKNOWN_KEY,
        "unknown_key",
        "The update is signed with a key this box does not trust.",
        "Sign with the programme's key, or install the public key on the box image.",
    ),
    Message(
        BAD_SIGNATURE,
        "bad_signature",
        "The update signature is wrong.",
        "The bundle was changed after signing or the signature is damaged: build it again.",
    ),
    Message(
        OLDER,
        "older",
        "This update is older than the installed version.",
        "Build a bundle with a higher version number.",
    ),
    Message(
        ALREADY_INSTALLED,
        "already_installed",
        "This update is already installed.",
        "Nothing to do. A new release needs a higher version number.",
    ),
    Message(
        REJECTED_BEFORE,
        "rejected_before",
        "This version failed before. It will not be installed again.",
        "Fix the release and build it with a higher version number.",
    ),
    Message(
        NEEDS_EARLIER,
        "needs_earlier",
        "Install the earlier update first.",
        "The bundle needs a newer installed version (min_installed_version): install that first.",
    ),
    Message(
        NO_SPACE,
        "no_space",
        "There is not enough space on the box.",
        "Free space on the data partition (old exports, recordings) or make the bundle smaller.",
    ),
    Message(
        SELF_TEST_FAILED,
        "self_test_failed",
        "The new version failed its self test. Nothing was changed.",
        "Run the release's self-test on a laptop; fix it and build a higher version.",
    ),
    Message(
        ROLLED_BACK,
        "rolled_back",
        "The new version did not start. The box went back to the previous version.",
        "Read the report on the stick; this version is now refused on this box: fix it and build a higher version.",
    ),
    Message(
        STICK_ERROR,
        "stick_error",
        "The stick could not be read.",
        "Try another stick (FAT32 or exFAT); keep it in until the box says you can remove it.",
    ),
    Message(
        STAGED,
        "staged",
        "The update is ready. It will start when this circle ends.",
        "Nothing to do: the box switches after the circle; the next report shows the result.",
    ),
    Message(
        INTERNAL_ERROR,
        "internal_error",
        "Something went wrong with the update.",
        "Send the report on the stick and the box's journal (journalctl -u 'circlebox-usb-import@*').",
    ),
)

MESSAGES: dict[str, Message] = {m.code: m for m in _ALL}
NOT_FAILURES = frozenset({UPDATED, ALREADY_INSTALLED, STAGED})


def text(code: str, **fields: object) -> str:
    """The English sentence for a code, with its fields filled in."""
    return MESSAGES[code].text.format(**fields)


def prompts() -> dict[str, str]:
    """Every prompt the real announcer needs, by prompt id, for the renderer to pre-render."""
    out = {f"update:{m.code}": m.text.replace(" {version}.", "").rstrip(".") + "." for m in _ALL}
    out["update:U00"] = "Updated to version"
    out.update(
        {
            f"digit:{d}": w
            for d, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))
        }
    )
    out["update:code"] = "Code"
    return out


def spoken_parts(code: str, **fields: object) -> list[str]:
    """The prompt ids to play in order for one message (number digit by digit, then the code)."""
    parts = [f"update:{code}"]
    if "{version}" in MESSAGES[code].text:
        parts += [f"digit:{d}" for d in str(fields.get("version", ""))]
    if code.startswith("U") and code not in NOT_FAILURES:
        parts += ["update:code", *(f"digit:{d}" for d in code[1:])]
    return parts
