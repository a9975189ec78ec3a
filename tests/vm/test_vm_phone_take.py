"""A phone's own recording on the booted box: the studio reads M4A, 3GP and WebM through PyAV's
FFmpeg in a capped child of the admin service, under its systemd sandbox (syscall filter, memory
ceiling, no new privileges) and on aarch64. Never checked in the tree, where the admin runs
unconfined on x86.

Run by `make vm-test`. The tests share one VM and run in order.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

import pytest
from phone_audio import phone_recording
from test_admin_studio import SWAHILI_FORM

from vm.admin_client import CSRF, AdminPage
from vm.steps import journal, set_up_admin, settle

pytestmark = pytest.mark.vm

STUDIO = "/circles/mduara/studio/"
TAKES = {"step:karibu": ("m4a", "Sauti Memo.m4a"), "step:zamu": ("3gp", "rec001.3gp"),
         "msg:ready": ("webm", "recording.webm")}


def send_take(admin: AdminPage, prompt_id: str, data: bytes, filename: str) -> tuple[int, str]:
    """The studio's "Send this recording": a multipart form, as the phone's browser sends it."""
    _, _, page = admin.get(STUDIO)
    token = CSRF.search(page)
    assert token, page[:500]
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in {"csrf_token": token[1], "prompt": prompt_id, "words": "maneno"}.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="take"; filename="{filename}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(admin.base + STUDIO + "take", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with admin.opener.open(request, timeout=300) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_phone_recordings_are_read_by_the_admin_in_its_sandbox(box):
    settle(box)
    admin = set_up_admin(box)
    status, url, page = admin.post_form("/circles/new", {**SWAHILI_FORM, "op": "studio"}, token_from="/circles/new")
    assert status == 200 and url.endswith(STUDIO), (status, url, page[:500])
    seconds = {}
    for prompt_id, (kind, filename) in TAKES.items():
        started = time.monotonic()
        status, page = send_take(admin, prompt_id, phone_recording(kind, seconds=1.0), filename)
        seconds[kind] = time.monotonic() - started
        assert status == 200 and "recorded. Listen to it below." in page, (
            kind, status, page[-2500:], journal(box, "circlebox-admin", 40))
    print("phone take sent -> recorded (s, emulated aarch64):", {k: round(v, 1) for k, v in seconds.items()})
    listed = admin.get(STUDIO)[2]
    for prompt_id in TAKES:
        assert f'data-prompt="{prompt_id}"' in listed
    assert "Bad system call" not in journal(box, "circlebox-admin", 200)
