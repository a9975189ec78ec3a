"""Update benchmark: build, verify and apply a voice-sized bundle (one big model file plus many
small prompt WAVs), then re-insert the same bundle (the no-op path). Reports throughput and
the peak memory of the apply (the reader streams, so memory must not grow with the bundle).

Run: .venv/bin/python -m bench.bench_update [--mib 64]
Prints a markdown table; copy the figures into BENCHMARKS.md ("## Updates").
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.update.box import Box
from device.update.builder import build_bundle, files_of_dir
from device.update.installer import apply_bundle, verify_bundle
from device.update.keys import key_id

APPLY_PROBE = r"""
import sys, time
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from device.update.box import Box
from device.update.installer import apply_bundle
from device.update.keys import key_id
pub = load_pem_public_key(Path(sys.argv[3]).read_bytes())
box = Box(root=Path(sys.argv[2]), trusted_keys={key_id(pub): pub}, stay_up_s=0)
t = time.perf_counter()
r = apply_bundle(Path(sys.argv[1]), box)
# VmHWM, not ru_maxrss: ru_maxrss survives execve and would report the parent's peak.
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(r.code, time.perf_counter() - t, hwm)
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=64, help="size of the big file (MiB)")
    args = parser.parse_args()
    from cryptography.hazmat.primitives import serialization

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp_name:
        tmp = Path(tmp_name)
        src = tmp / "src"
        (src / "prompts").mkdir(parents=True)
        (src / "voices").mkdir()
        (src / "voices" / "voice.onnx").write_bytes(os.urandom(args.mib << 20))
        (src / "voices" / "voice.onnx.json").write_text(  # a voice release declares its language
            '{"audio": {"sample_rate": 22050}, "language": {"code": "sw_KE"}}')
        for i in range(200):
            (src / "prompts" / f"p{i:03d}.wav").write_bytes(os.urandom(40_000))
        key = Ed25519PrivateKey.generate()
        pub_path = tmp / "k.pub"
        pub_path.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        trusted = {key_id(key.public_key()): key.public_key()}
        bundle = tmp / "voice-1.cbx"
        size_mib = sum(p.stat().st_size for p in src.rglob("*") if p.is_file()) / (1 << 20)

        t = time.perf_counter()
        build_bundle(bundle, files_of_dir(src), key, kind="voice", version=1, min_installed=0)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        verify_bundle(bundle, Box(root=tmp, trusted_keys=trusted))
        verify_s = time.perf_counter() - t
        root = tmp / "root"
        probe = subprocess.run(
            [sys.executable, "-c", APPLY_PROBE, str(bundle), str(root), str(pub_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        code, apply_s, rss_kb = probe.stdout.split()
        t = time.perf_counter()
        again = apply_bundle(bundle, Box(root=root, trusted_keys=trusted, stay_up_s=0))
        noop_s = time.perf_counter() - t

    print(
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; bundle {size_mib:.0f} MiB, 201 files\n"
    )
    print("| step | seconds | MiB/s |")
    print("|---|---|---|")
    print(f"| build (hash + sign + tar) | {build_s:.2f} | {size_mib / build_s:.0f} |")
    print(f"| verify (signature + every byte) | {verify_s:.2f} | {size_mib / verify_s:.0f} |")
    print(
        f"| apply ({code}: copy, verify, extract, fsync, switch) | {float(apply_s):.2f} | "
        f"{size_mib / float(apply_s):.0f} |"
    )
    print(f"| same bundle again ({again.code}: copy + hash only) | {noop_s:.2f} | {size_mib / noop_s:.0f} |")
    print(
        f"\nPeak RSS of the apply process: {int(rss_kb) / 1024:.0f} MiB "
        f"(bundle {size_mib:.0f} MiB: the reader streams 1 MiB chunks)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
