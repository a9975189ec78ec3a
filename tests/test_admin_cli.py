"""`circlebox admin` serves the page with waitress, as its own process."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request


def test_circlebox_admin_serves_with_waitress(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device.cli",
            "--data",
            str(data),
            "admin",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://localhost:(\d+)/", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        base = f"http://127.0.0.1:{match[1]}"
        with urllib.request.urlopen(base + "/setup", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Server"] == "circlebox"
            assert "setup code" in response.read().decode()
        request = urllib.request.Request(base + "/setup", headers={"Host": "attacker.example"})
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("a foreign Host was served")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400
        assert (data / "secrets" / "setup-code").exists()
    finally:
        proc.terminate()
        proc.wait(10)
