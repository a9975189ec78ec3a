#!/bin/bash
# The root file system of the `--base debian` image, as a tarball cached by its inputs:
#   image/debian_rootfs.sh CACHE_DIR   prints the tarball's path (builds it when missing)
# Inputs: DEBIAN_SUITE and DEBIAN_MIRROR from image/versions.env, image/debian-packages.txt and
# this script. mmdebstrap checks every package against the archive's signed Release file.
# Needs root, mmdebstrap and arm64 emulation (tools/install-vm-deps.sh).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=image/versions.env
. "$REPO/image/versions.env"
cache=${1:?usage: debian_rootfs.sh CACHE_DIR}
log() { printf 'image_build: %s\n' "$*" >&2; }

packages=$(grep -v '^\s*\(#\|$\)' "$REPO/image/debian-packages.txt" | sort -u | paste -sd, -)
key=$( { echo "$DEBIAN_SUITE $DEBIAN_MIRROR $DEBIAN_COMPONENTS"; echo "$packages";
         cat "$0"; } | sha256sum | cut -c1-16)
tarball="$cache/debian-$DEBIAN_SUITE-arm64-$key.tar"
if [ -f "$tarball" ]; then
    log "root file system: cached $(basename "$tarball")"
    echo "$tarball"
    exit 0
fi
command -v mmdebstrap >/dev/null || { log "ERROR: mmdebstrap missing (tools/install-vm-deps.sh)"; exit 1; }
install -d "$cache"
# mmdebstrap picks the output format from the name's ending: keep ".tar" at the end.
partial="$cache/partial-$(basename "$tarball")"
log "root file system: mmdebstrap $DEBIAN_SUITE arm64 (not cached: about 20 minutes under emulation)"
start=$SECONDS
# The hooks: /boot/firmware must exist before raspi-firmware's kernel hook runs; the root is
# found by label (the same on an SD card, a USB disk and in the VM); the initrd carries every
# module (Pi MMC and the VM's virtio disk alike). force-confold keeps the hooks' files where a
# package ships the same conffile (raspi-firmware's /etc/default file): dpkg must never ask.
# shellcheck disable=SC2016  # the hooks expand $1 in mmdebstrap's shell, not here
mmdebstrap --arch=arm64 --variant=minbase --components="${DEBIAN_COMPONENTS// /,}" \
    --include="$packages" --dpkgopt=force-confold --dpkgopt=force-confdef \
    --setup-hook='mkdir -p "$1/boot/firmware" "$1/etc/default" "$1/etc/initramfs-tools/conf.d"' \
    --setup-hook='echo "ROOTPART=LABEL=CBROOT" > "$1/etc/default/raspi-firmware"' \
    --setup-hook='echo "CONSOLES=\"ttyS1,115200 tty0\"" >> "$1/etc/default/raspi-firmware"' \
    --setup-hook='echo MODULES=most > "$1/etc/initramfs-tools/conf.d/circlebox"' \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages*' \
    "$DEBIAN_SUITE" "$partial" "$DEBIAN_MIRROR" >&2
mv "$partial" "$tarball"
log "root file system: built in $(( SECONDS - start )) s: $(basename "$tarball")"
echo "$tarball"
