"""The booted-image suite: `make vm-test` builds the Debian-based image (cached) and runs it.

Marked `vm` (skipped by the default run). The image comes from CIRCLEBOX_VM_IMAGE or
build/vm/circlebox-vm.img; its update-signing key pair from build/vm/keys (made by make vm-test,
so the suite can sign bundles the box trusts).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vm.qemu_box import REPO, QemuBox, have_vm_tools, partitions
from vm.stick import NEW_VERSION, ContentBundle, build_content_bundle, make_stick

VM_DIR = REPO / "build" / "vm"
SIGNING_KEY = VM_DIR / "keys" / "vm-test.key"  # its .pub is what make vm-test gives the image


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/vm/" in str(item.fspath):
            item.add_marker(pytest.mark.vm)


@pytest.fixture(scope="session")
def vm_image() -> Path:
    missing = have_vm_tools()
    if missing:
        pytest.skip(missing)
    image = Path(os.environ.get("CIRCLEBOX_VM_IMAGE", VM_DIR / "circlebox-vm.img"))
    if not image.is_file():
        pytest.skip(f"no image at {image}: run `make vm-test` (it builds one)")
    return image


@pytest.fixture(scope="session")
def image_cache(vm_image, tmp_path_factory) -> Path:
    """The rendered prompts on the image's data partition, copied out (debugfs rdump)."""
    out = tmp_path_factory.mktemp("image-data")
    data = partitions(vm_image)[2]
    subprocess.run(["debugfs", "-R", f"rdump /cache {out}", f"{vm_image}?offset={data.start}"],
                   check=True, capture_output=True)
    return out / "cache"


@pytest.fixture(scope="module")
def box(vm_image, tmp_path_factory, request):
    """One VM for the module's tests, in order: first boot, then what follows."""
    work = tmp_path_factory.mktemp("vm")
    vm = QemuBox(vm_image, work)
    vm.prepare()
    vm.start()
    vm.login()
    yield vm
    vm.shutdown()
    print(f"console log: {work / 'console.log'}")


@pytest.fixture(scope="session")
def bundle(vm_image, image_cache, tmp_path_factory) -> ContentBundle:
    """A signed content bundle with a new version of the image's circle (a new welcome)."""
    if not SIGNING_KEY.is_file():
        pytest.skip(f"no signing key at {SIGNING_KEY}: run `make vm-test` (it makes the key the image trusts)")
    return build_content_bundle(vm_image, image_cache, SIGNING_KEY, tmp_path_factory.mktemp("bundle"),
                                "three-step-circle", NEW_VERSION)


@pytest.fixture(scope="module")
def stick(bundle, tmp_path_factory) -> Path:
    """A fresh FAT stick with the bundle at its top, for one module's VM."""
    return make_stick(tmp_path_factory.mktemp("stick") / "stick.img", bundle.path)
