#!/bin/sh
# Debian packages for building the Debian-based arm64 image here and booting it in a VM
# (`image_build.sh --base debian`, `make vm-test`). Heavy (qemu): never installed by CI, which
# runs tools/install-system-deps.sh only. Installs only what is missing, then makes sure the
# kernel runs arm64 programs through qemu-user (binfmt_misc), which mmdebstrap needs.
set -eu
need=""
command -v mmdebstrap >/dev/null 2>&1 || need="$need mmdebstrap"
command -v arch-test >/dev/null 2>&1 || need="$need arch-test"
[ -x /usr/bin/qemu-aarch64-static ] || need="$need qemu-user-static"
command -v update-binfmts >/dev/null 2>&1 || need="$need binfmt-support"
command -v qemu-system-aarch64 >/dev/null 2>&1 || need="$need qemu-system-arm"
[ -x /usr/sbin/mkfs.vfat ] || [ -x /sbin/mkfs.vfat ] || need="$need dosfstools"
command -v mcopy >/dev/null 2>&1 || need="$need mtools"
[ -x /usr/sbin/sfdisk ] || [ -x /sbin/sfdisk ] || need="$need fdisk"
[ -x /usr/sbin/mke2fs ] || [ -x /sbin/mke2fs ] || need="$need e2fsprogs"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
if [ -n "$need" ]; then
    echo "installing Debian packages:$need"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086  # a list of package names
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# binfmt_misc: containers often start without it mounted.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    $SUDO update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || $SUDO update-binfmts --import qemu-aarch64
fi
arch-test arm64 >/dev/null || { echo "install-vm-deps: this machine cannot run arm64 programs (binfmt_misc + qemu-user-static)" >&2; exit 1; }
echo "install-vm-deps: ready (mmdebstrap, qemu-system-aarch64, arm64 emulation)"
