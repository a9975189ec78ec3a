#!/bin/bash
# Build the Circlebox SD-card image, or just the files that go into it.
#
#   ./image_build.sh --tree-only OUT_DIR [options]   files of the image in OUT_DIR (no root, no
#                                                    base image; runs in CI)
#   ./image_build.sh --check ROOT_DIR                check a tree or a mounted image root
#   ./image_build.sh --image OUT.img [options]       the full image (root, internet, Linux with
#                                                    qemu-user-static + binfmt for arm64)
#   ./image_build.sh --image OUT.img --base debian   the same from Debian's arm64 archive (no
#                                                    Raspberry Pi OS download; boots in qemu too:
#                                                    tools/install-vm-deps.sh installs the tools)
#   ./image_build.sh --lock                          add aarch64 wheel hashes to
#                                                    image/requirements-pi.txt (internet)
# Options:
#   --base rpi|debian   what the full image starts from: the Raspberry Pi OS Lite image (rpi,
#                       default) or a root made by mmdebstrap from Debian (debian; cached in
#                       ${XDG_CACHE_HOME:-~/.cache}/circlebox-image, or CIRCLEBOX_IMAGE_CACHE)
#   --pubkey FILE       the programme's update-signing public key (.pub from `circlebox bundle
#                       keygen`); required, repeat it for several keys. Without one the box
#                       refuses every update (U04)
#   --build NAME        audio build from firmware_config/builds (default i2s-amp-usb-mic)
#   --with-vosk DIR     bake an unpacked vosk model directory into the data partition
#   --no-render         do not pre-render the prompts (or set CIRCLEBOX_IMAGE_NO_RENDER=1)
#   --wheelhouse DIR    (tree only) also install the dependencies from wheels in DIR
#
# Pinned inputs: image/versions.env (base image URL + sha256, Debian suite, sizes),
# image/debian-packages.txt (--base debian), image/requirements-pi.txt (Python wheels, with
# hashes) and image/requirements-pi-sdist.txt (pure-Python sources, with hashes). docs/setup-a-box.md explains the
# full build step by step.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=i2s-amp-usb-mic
VOSK=""
RENDER=1
WHEELHOUSE=""
PUBKEYS=()
MODE=""
TARGET=""
BASE=rpi
# Outside the clone, so a fresh clone (or `make clean`) reuses the root and venv built before.
CACHE=${CIRCLEBOX_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/circlebox-image}
[ "${CIRCLEBOX_IMAGE_NO_RENDER:-0}" = 1 ] && RENDER=0

log() { printf 'image_build: %s\n' "$*" >&2; }
warn() { printf 'image_build: WARNING: %s\n' "$*" >&2; }
die() { printf 'image_build: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

host_python() {
    if [ -x "$REPO/.venv/bin/python" ]; then echo "$REPO/.venv/bin/python"; else command -v python3; fi
}

# --- the files of the image -------------------------------------------------------------------

# pubkeys [--root ROOT]: check every --pubkey file (and install them under ROOT) with the
# updater's own key loader; image/install_pubkeys.py says exactly what is wrong.
pubkeys() {
    "$(host_python)" "$REPO/image/install_pubkeys.py" "$@" "${PUBKEYS[@]}" || exit 1
}

# install_files ROOT: copy and append everything image/files.txt lists.
install_files() {
    local root=$1 kind src dest mode path
    declare -A appends=()
    local -a append_order=()
    while read -r kind src dest mode; do
        case "$kind" in ''|'#'*) continue ;; esac
        src=${src//\{build\}/$BUILD}
        case "$kind" in
            copy)
                if [[ $dest == */ ]]; then
                    install -d -m 0755 "$root$dest"
                    for path in "$REPO"/$src; do
                        [ -f "$path" ] || continue
                        install -m "$mode" "$path" "$root$dest$(basename "$path")"
                    done
                else
                    [ -f "$REPO/$src" ] || die "missing source $src"
                    install -D -m "$mode" "$REPO/$src" "$root$dest"
                fi
                ;;
            append)
                [ -f "$REPO/$src" ] || die "missing source $src"
                if [ -z "${appends[$dest]+x}" ]; then append_order+=("$dest"); fi
                appends[$dest]="${appends[$dest]:-}$REPO/$src"$'\n'
                ;;
            *) die "image/files.txt: unknown kind '$kind'" ;;
        esac
    done < "$REPO/image/files.txt"
    local -a sources
    for dest in "${append_order[@]}"; do
        mapfile -t sources < <(printf '%s' "${appends[$dest]}")
        append_block "$root$dest" "${sources[@]}"
    done
}

BEGIN_MARK="# >>> circlebox (image_build.sh) >>>"
END_MARK="# <<< circlebox <<<"

# append_block FILE SOURCE...: replace (or add) our block at the end of FILE.
append_block() {
    local file=$1; shift
    install -d -m 0755 "$(dirname "$file")"
    touch "$file"
    sed -i "/^$BEGIN_MARK\$/,/^$END_MARK\$/d" "$file"
    # The stock config.txt says dtparam=audio=on; our block decides, so comment it out.
    if [[ $file == */config.txt ]]; then sed -i 's/^dtparam=audio=/#(circlebox) &/' "$file"; fi
    { echo "$BEGIN_MARK"; cat "$@"; echo "$END_MARK"; } >> "$file"
}

# enable_units ROOT: what `systemctl enable` does, offline, for every unit with [Install]
# (templates only when they name a DefaultInstance=).
enable_units() {
    local root=$1 unit name
    local -a units=()
    for unit in "$REPO"/systemd/*; do
        [ -f "$unit" ] || continue
        name=$(basename "$unit")
        grep -q '^\[Install\]' "$unit" || continue
        if [[ $name == *@.* ]] && ! grep -q '^DefaultInstance=' "$unit"; then continue; fi
        units+=("$name")
    done
    [ "${#units[@]}" -gt 0 ] || return 0
    local out
    # Offline: systemctl --root only writes the wants/ symlinks under ROOT.
    out=$(systemctl --root="$root" enable "${units[@]}" 2>&1) || die "systemctl enable failed: $out"
}

# build_wheel DIR: the circlebox wheel, built from a copy of just what the wheel is made of
# (the packages, pyproject.toml and the README it names).
build_wheel() {
    local out=$1 src item
    src=$(mktemp -d)
    for item in pyproject.toml README.md device audio local_admin; do
        cp -r "$REPO/$item" "$src/"
    done
    find "$src" -name __pycache__ -prune -exec rm -rf {} +
    "$(host_python)" -m pip wheel --quiet --no-deps --wheel-dir "$out" "$src" >&2
    rm -rf "$src"
    ls "$out"/circlebox-*.whl >/dev/null 2>&1 || die "no circlebox wheel was built"
}

# install_app_tree ROOT: a real venv at ROOT/opt/circlebox/venv (made by this machine's
# Python, so it runs here) with the app installed from its wheel. A venv is not relocatable:
# the full build makes the venv again inside the image's chroot at /opt/circlebox/venv from
# the same wheel (install_app_chroot).
install_app_tree() {
    local root=$1 py venv
    py=$(host_python)
    venv="$root/opt/circlebox/venv"
    install -d -m 0755 "$root/opt/circlebox/wheels"
    build_wheel "$root/opt/circlebox/wheels"
    "$py" -m venv --without-pip "$venv"
    local -a pip=("$py" -m pip --python "$venv/bin/python" install --quiet --no-index --no-compile)
    if [ -n "$WHEELHOUSE" ]; then
        "${pip[@]}" --find-links "$WHEELHOUSE" -r <(grep -v '^lgpio==' "$REPO/image/requirements-pi.txt") >&2
    fi
    "${pip[@]}" --no-deps "$root"/opt/circlebox/wheels/circlebox-*.whl >&2
}

# render ROOT: pre-render every prompt of the packaged circles into the data partition, with
# this machine's circlebox (the WAVs do not depend on the CPU).
render_prompts() {
    local root=$1 cmd
    cmd=${CIRCLEBOX_RENDER_CMD:-$REPO/.venv/bin/circlebox}
    if [ "$RENDER" = 0 ]; then
        echo skipped
        return
    fi
    if ! "$cmd" render --help >/dev/null 2>&1; then
        warn "TODO: '$cmd render' is not available yet: prompts NOT pre-rendered"
        echo unavailable
        return
    fi
    # The image's own config (sample rate, voice), every packaged circle and any in the tree.
    "$cmd" --config "$root/etc/circlebox/config.yaml" --data "$root/var/lib/circlebox" \
        render --all >&2 || die "circlebox render failed"
    # The packaged courses' announcements ("This is session 3 of 16."), so a new box can use
    # one at once: made on the box, under Nice=10, they took 11 minutes in the emulated VM.
    local course
    for course in "$REPO"/device/courses/*.yaml; do
        "$cmd" --config "$root/etc/circlebox/config.yaml" --data "$root/var/lib/circlebox" \
            render --course "$(basename "$course" .yaml)" >&2 || die "circlebox render --course failed"
    done
    # -print -quit, not `| grep -q .`: with pipefail, grep's early exit kills find (SIGPIPE)
    # once the cache is bigger than a pipe's buffer, and a good render looked like none.
    [ -n "$(find "$root/var/lib/circlebox/cache" -type f -print -quit)" ] || die "render made no files"
    echo yes
}

add_vosk() {
    local root=$1 model=$2 name
    if [ ! -f "$model/am/final.mdl" ] || [ ! -d "$model/conf" ]; then
        die "--with-vosk $model: not an unpacked vosk model (no am/final.mdl or conf/)"
    fi
    name=$(basename "$model")
    install -d -m 0755 "$root/var/lib/circlebox/models/vosk"
    cp -r --no-preserve=ownership "$model" "$root/var/lib/circlebox/models/vosk/$name"
    chmod -R u=rwX,go=rX "$root/var/lib/circlebox/models/vosk/$name"
    echo "$name"
}

write_manifest() {
    local root=$1 mode=$2 rendered=$3 vosk=$4 deps=$5 commit
    commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
    install -d -m 0755 "$root/usr/share/circlebox"
    {
        echo "mode=$mode"
        echo "build=$BUILD"
        echo "commit=$commit"
        echo "rendered=$rendered"
        echo "vosk=${vosk:-none}"
        echo "deps=$deps"
        echo "built_at=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)"
    } > "$root/usr/share/circlebox/image-manifest.txt"
}

# The parts shared by --tree-only and --image. $2 is how the app gets in: tree or chroot.
build_tree() {
    local root=$1 app=$2 rendered vosk="" deps=no
    [ -d "$REPO/firmware_config/builds/$BUILD" ] || die "unknown build '$BUILD' (see firmware_config/builds)"
    install -d -m 0755 "$root"
    umask 022
    install_files "$root"
    pubkeys --root "$root"
    install -d -m 0755 "$root/usr/local/bin"
    ln -sfn /opt/circlebox/venv/bin/circlebox "$root/usr/local/bin/circlebox"
    enable_units "$root"
    install -d -m 0755 "$root/var/lib/circlebox" "$root/var/lib/circlebox/cache"
    if [ "$app" = tree ]; then
        install_app_tree "$root"
        [ -n "$WHEELHOUSE" ] && deps=yes
    else
        install_app_chroot "$root"
        deps=yes
    fi
    rendered=$(render_prompts "$root")
    if [ -n "$VOSK" ]; then vosk=$(add_vosk "$root" "$VOSK"); fi
    write_manifest "$root" "$app" "$rendered" "$vosk" "$deps"
}

run_check() {
    command -v python3 >/dev/null || die "python3 is needed for --check"
    python3 "$REPO/image/check_tree.py" --repo "$REPO" "$1"
}

# --- the full image ---------------------------------------------------------------------------

MNT=""    # the image's root while it is built (a mount point for rpi, a folder for debian)
LOOP=""
WORK=""   # --base debian: the folder the root is unpacked in (removed at the end)
STARTED=$SECONDS
STEP=0
STEPS=0

# step TEXT: progress, with the step number and the minutes so far.
step() {
    STEP=$((STEP + 1))
    log "[$STEP/$STEPS $(( (SECONDS - STARTED) / 60 ))m$(( (SECONDS - STARTED) % 60 ))s] $*"
}

unmount_chroot() {
    local root=$1 m
    for m in etc/resolv.conf dev/pts dev proc sys run var/lib/circlebox boot/firmware; do
        mountpoint -q "$root/$m" && umount "$root/$m"
    done
    return 0
}

cleanup() {
    set +e
    if [ -n "$MNT" ]; then
        unmount_chroot "$MNT"
        if [ -n "$WORK" ]; then
            # Never remove a folder with the host's /dev or /proc still bound inside.
            findmnt -rn -o TARGET | grep -q "^$WORK" || rm -rf "$WORK"
        else
            mountpoint -q "$MNT" && umount "$MNT"
            rmdir "$MNT"
        fi
    fi
    [ -n "$LOOP" ] && losetup -d "$LOOP"
}

need_full_build_inputs() {
    # shellcheck source=image/versions.env
    . "$REPO/image/versions.env"
    if [ "$BASE" = rpi ]; then
        case "$RPI_OS_SHA256" in
            FILL-ME*|"") die "image/versions.env: RPI_OS_SHA256 is not filled in (see the comment there)" ;;
        esac
        [[ $RPI_OS_SHA256 =~ ^[0-9a-f]{64}$ ]] || die "RPI_OS_SHA256 is not a sha256"
    fi
    if grep -E '^[A-Za-z0-9_.-]+==' "$REPO/image/requirements-pi.txt" "$REPO/image/requirements-pi-sdist.txt" \
            | grep -qv -- '--hash=sha256:'; then
        die "image/requirements-pi.txt has requirements without hashes: run --lock first"
    fi
    [ "$(id -u)" = 0 ] || die "--image needs root (loop devices, mounts, chroot)"
    local tool
    local -a tools=(sfdisk mkfs.ext4 chroot sha256sum)
    if [ "$BASE" = rpi ]; then tools+=(curl xz losetup resize2fs); else tools+=(mmdebstrap mkfs.vfat mcopy mke2fs); fi
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null || die "missing tool: $tool (tools/install-vm-deps.sh installs the --base debian ones)"
    done
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || [ "$(uname -m)" = aarch64 ] \
        || die "no arm64 emulation: install qemu-user-static and binfmt-support (tools/install-vm-deps.sh)"
}

download_base() {
    local file
    file="$CACHE/$(basename "$RPI_OS_URL")"
    install -d "$CACHE"
    if [ ! -f "$file" ]; then
        log "downloading $RPI_OS_URL"
        curl -fL --retry 3 -o "$file.part" "$RPI_OS_URL"
        mv "$file.part" "$file"
    fi
    echo "$RPI_OS_SHA256  $file" | sha256sum -c --quiet - \
        || die "$file does not match RPI_OS_SHA256: delete it and check the pin"
    echo "$file"
}

# platform_args: --platform TAG for every tag in WHEEL_PLATFORMS (image/versions.env).
platform_args() {
    local tag
    for tag in $WHEEL_PLATFORMS; do printf -- '--platform %s ' "$tag"; done
}

# fetch_wheelhouse DIR: every pinned wheel (checked against its hash), plus a wheel built here
# from each pinned pure-Python sdist; writes DIR/requirements.txt with the hashes of all of
# them (the sdist-built wheels' hashes are of the wheels just built from verified sources).
fetch_wheelhouse() {
    local dir=$1 sdists file name
    # shellcheck disable=SC2046  # one word per option
    "$(host_python)" -m pip download --quiet --require-hashes --no-deps --only-binary=:all: \
        $(platform_args) --python-version "$PYTHON_MINOR" --implementation cp \
        -r "$REPO/image/requirements-pi.txt" -d "$dir" >&2
    grep -E '^[A-Za-z0-9_.-]+==' "$REPO/image/requirements-pi.txt" > "$dir/requirements.txt"
    sdists=$(mktemp -d)
    "$(host_python)" -m pip download --quiet --require-hashes --no-deps --no-binary=:all: \
        -r "$REPO/image/requirements-pi-sdist.txt" -d "$sdists" >&2
    for file in "$sdists"/*; do
        [ -f "$file" ] || continue
        "$(host_python)" -m pip wheel --quiet --no-deps --wheel-dir "$dir" "$file" >&2
    done
    while read -r name; do
        file=$(find "$dir" -maxdepth 1 -iname "${name//-/_}-*-py3-none-any.whl" | head -1)
        [ -n "$file" ] || die "$name: the wheel built from its sdist is not pure Python (py3-none-any)"
        echo "$name==$(basename "$file" | cut -d- -f2) --hash=sha256:$(sha256sum "$file" | cut -d' ' -f1)" >> "$dir/requirements.txt"
    done < <(grep -oE '^[A-Za-z0-9_.-]+==' "$REPO/image/requirements-pi-sdist.txt" | tr -d '=')
    rm -rf "$sdists"
}

# install_app_chroot ROOT: the venv at /opt/circlebox/venv made by the image's own python3
# (under emulation), the pinned dependencies from the wheelhouse, then the app's wheel. The venv
# with its dependencies is cached by the image's Python, the pins and the wheels' hashes.
install_app_chroot() {
    local root=$1 wheels=$1/opt/circlebox/wheels key cached
    install -d -m 0755 "$wheels"
    build_wheel "$wheels"
    fetch_wheelhouse "$wheels"
    # Keyed by the pins (a wheel built from an sdist differs, byte for byte, on every build).
    key=$( { chroot "$root" python3 -VV; cat "$REPO/image/requirements-pi.txt" \
             "$REPO/image/requirements-pi-sdist.txt"; } | sha256sum | cut -c1-16)
    cached="$CACHE/venv-$key.tar"
    if [ -f "$cached" ]; then
        log "app venv: cached $(basename "$cached")"
        tar -C "$root" -xpf "$cached"
    else
        log "app venv: installing $(grep -c == "$wheels/requirements.txt") pinned wheels under emulation"
        chroot "$root" /bin/sh -euc "
            python3 -m venv /opt/circlebox/venv
            /opt/circlebox/venv/bin/pip install --quiet --no-index --find-links /opt/circlebox/wheels \
                --require-hashes -r /opt/circlebox/wheels/requirements.txt
        "
        install -d "$CACHE"
        tar -C "$root" -cf "$cached.part" opt/circlebox/venv && mv "$cached.part" "$cached"
    fi
    chroot "$root" /bin/sh -euc "
        /opt/circlebox/venv/bin/pip install --quiet --no-index --no-deps --force-reinstall /opt/circlebox/wheels/circlebox-*.whl
        /opt/circlebox/venv/bin/circlebox --help >/dev/null
    "
    # The wheels are in the venv now; keep only the app's (check_tree compares against it).
    find "$wheels" -maxdepth 1 -type f ! -name 'circlebox-*.whl' -delete
}

# add_partitions IMG ROOT_GROW DATA_SIZE: grow partition 2 (the root; the venv needs room) by
# ROOT_GROW, then add partition 3 (the data partition) of DATA_SIZE after it. Works on an image
# file without root; the file systems are grown/made later on the loop device.
add_partitions() {
    local img=$1 grow=$2 size=$3 start len grow_s data_start data_len
    [ "$(sfdisk -d "$img" | grep -c ' : start=')" = 2 ] \
        || die "$img: expected exactly 2 partitions (boot, root)"
    read -r start len < <(sfdisk -d "$img" | sed -n 's/.*2 : start= *\([0-9]*\), size= *\([0-9]*\).*/\1 \2/p')
    grow_s=$(( $(numfmt --from=iec "$grow") / 512 ))
    data_len=$(( $(numfmt --from=iec "$size") / 512 ))
    len=$(( len + grow_s ))
    data_start=$(( (start + len + 2047) / 2048 * 2048 ))
    truncate -s "$(( (data_start + data_len) * 512 ))" "$img"
    echo "start=$start, size=$len" | sfdisk --quiet --no-reread --no-tell-kernel -N 2 "$img"
    echo "start=$data_start, size=$data_len, type=83" \
        | sfdisk --quiet --no-reread --no-tell-kernel --append "$img"
}

bind_host() {
    local root=$1 part
    for part in dev dev/pts proc sys run; do mount --bind "/$part" "$root/$part"; done
}

# base_rpi OUT: Raspberry Pi OS Lite, unpacked to OUT.tmp, partitions grown and added, mounted
# at MNT with the data partition at /var/lib/circlebox, plus the Debian packages we need.
base_rpi() {
    local out=$1 base
    step "base: Raspberry Pi OS $RPI_OS_RELEASE"
    base=$(download_base)
    xz -dc "$base" > "$out.tmp"
    add_partitions "$out.tmp" "$ROOT_GROW" "$DATA_SIZE"
    LOOP=$(losetup --show -fP "$out.tmp")
    e2fsck -pf "${LOOP}p2" || [ $? -le 1 ]
    resize2fs "${LOOP}p2"
    mkfs.ext4 -q -L CBDATA "${LOOP}p3"
    MNT=$(mktemp -d)
    mount "${LOOP}p2" "$MNT"
    mount "${LOOP}p1" "$MNT/boot/firmware"
    install -d "$MNT/var/lib/circlebox"
    mount "${LOOP}p3" "$MNT/var/lib/circlebox"
    bind_host "$MNT"
    cp --remove-destination /etc/resolv.conf "$MNT/etc/resolv.conf.circlebox-build"
    mount --bind "$MNT/etc/resolv.conf.circlebox-build" "$MNT/etc/resolv.conf" 2>/dev/null \
        || cp /etc/resolv.conf "$MNT/etc/resolv.conf"
    step "Debian packages: $APT_PACKAGES"
    # shellcheck disable=SC2086  # a list of package names
    chroot "$MNT" /bin/sh -euc "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $APT_PACKAGES"
    umount "$MNT/etc/resolv.conf" 2>/dev/null || true
    rm -f "$MNT/etc/resolv.conf.circlebox-build"
}

# base_debian: the cached mmdebstrap root (image/debian_rootfs.sh) unpacked in a folder at MNT,
# with what Raspberry Pi OS would have had: fstab lines for root and boot (by label), a host name.
base_debian() {
    local tarball
    step "base: Debian $DEBIAN_SUITE arm64 root file system"
    tarball=$("$REPO/image/debian_rootfs.sh" "$CACHE") || die "the Debian root file system was not built"
    install -d "$CACHE"
    WORK=$(mktemp -d "$CACHE/work.XXXXXX")
    MNT=$WORK/root
    install -d "$MNT"
    tar -C "$MNT" -xpf "$tarball" --numeric-owner
    [ -f "$MNT/boot/firmware/cmdline.txt" ] || die "raspi-firmware wrote no /boot/firmware/cmdline.txt"
    ls "$MNT"/boot/vmlinuz-* >/dev/null || die "no kernel in the Debian root"
    cat > "$MNT/etc/fstab" <<'FSTAB'
# The image's partitions, by label (image_build.sh --base debian).
LABEL=CBROOT  /               ext4   defaults,noatime,commit=5                0  1
LABEL=CBBOOT  /boot/firmware  vfat   defaults,noatime,umask=0022,nofail       0  2
FSTAB
    # Debian's cmdline.txt mounts the root "rw" from the start; Raspberry Pi OS's leaves the
    # kernel's "ro" (systemd remounts it per fstab). With overlayroot the lower root must stay
    # read-only (found in the VM): "ro", here and for any later regeneration of the file.
    sed -i 's/ rw / ro /' "$MNT/boot/firmware/cmdline.txt"
    echo ro > "$MNT/etc/default/raspi-extra-cmdline"
    grep -qw ro "$MNT/boot/firmware/cmdline.txt" || die "cmdline.txt: could not make the root read-only at boot"
    echo circlebox > "$MNT/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tcirclebox\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
        > "$MNT/etc/hosts"
    bind_host "$MNT"
}

# finish_root: every step after the base, the same for both: the app, its users and folders,
# the manifest, the check.
finish_root() {
    step "app: circlebox wheel, pinned aarch64 wheels, units, config, keys"
    build_tree "$MNT" chroot
    systemd-sysusers --root="$MNT" "$MNT/usr/lib/sysusers.d/circlebox.conf"
    # /run is the host's (bound) and made at each boot anyway.
    chroot "$MNT" systemd-tmpfiles --create --exclude-prefix=/run /usr/lib/tmpfiles.d/circlebox.conf
    # The prompts were rendered here as root (build_tree), but on the box the runtime and the
    # admin page (group circlebox) add sounds to the same folders: a root-owned cache/prompts
    # refused the first course's announcements ("Permission denied", found booting it in QEMU).
    chroot "$MNT" chown -R circlebox:circlebox /var/lib/circlebox/cache
    find "$MNT/var/lib/circlebox/cache" -type d -exec chmod 2775 {} +
    find "$MNT/var/lib/circlebox/cache" -type f -exec chmod 0664 {} +
    echo "base=$BASE" >> "$MNT/usr/share/circlebox/image-manifest.txt"
    chroot "$MNT" dpkg-query -W >> "$MNT/usr/share/circlebox/image-manifest.txt"
    rm -f "$MNT/var/cache/apt/archives"/*.deb
    # The host's /dev, /proc... must not be in what --check walks.
    local part
    for part in dev/pts dev proc sys run; do umount "$MNT/$part"; done
    step "check"
    run_check "$MNT"
}

# mib BYTES: rounded up to whole MiB.
mib() { echo $(( ($1 + 1048575) / 1048576 )); }

# assemble_debian OUT: an SD card image from the folder at MNT: partition 1 the Pi's boot
# files (FAT32, label CBBOOT), 2 the root (ext4, CBROOT), 3 the data partition (ext4, CBDATA)
# filled from /var/lib/circlebox. Made with mke2fs -d and mtools: no loop devices.
assemble_debian() {
    local out=$1 parts=$WORK/parts boot_mib=256 root_mib data_mib used
    install -d "$parts" "$WORK/data"
    # The data partition's files leave the root (the root keeps the empty mount point).
    (shopt -s dotglob nullglob; mv "$MNT"/var/lib/circlebox/* "$WORK/data/")
    used=$(du -sb --exclude=./boot/firmware "$MNT" | cut -f1)
    root_mib=$(( $(mib "$used") * 13 / 10 + 256 ))   # 30% + 256 MiB of room for the ext4 metadata
    data_mib=$(( $(numfmt --from=iec "$DATA_SIZE") / 1048576 ))
    mkfs.vfat -F 32 -n CBBOOT -C "$parts/boot.vfat" $((boot_mib * 1024)) >/dev/null
    mcopy -s -i "$parts/boot.vfat" "$MNT"/boot/firmware/* ::/
    (shopt -s dotglob nullglob; mv "$MNT"/boot/firmware/* "$WORK/")
    mke2fs -q -t ext4 -L CBROOT -d "$MNT" "$parts/root.ext4" "${root_mib}M"
    mke2fs -q -t ext4 -L CBDATA -d "$WORK/data" "$parts/data.ext4" "${data_mib}M"
    # mke2fs -d gives the file system's top folder root's 0755: set the mount point's owner and
    # mode (tmpfiles.d: group circlebox may add entries) on the data partition's top.
    local mode uid gid
    read -r mode uid gid < <(stat -c '%f %u %g' "$MNT/var/lib/circlebox")
    printf 'sif / mode 0x%s\nsif / uid %s\nsif / gid %s\n' "$mode" "$uid" "$gid" \
        | debugfs -w -f - "$parts/data.ext4" >/dev/null 2>&1 || die "could not set the data partition's top folder"
    local start1=2048 start2 start3
    start2=$(( start1 + boot_mib * 2048 ))
    start3=$(( start2 + root_mib * 2048 ))
    truncate -s 0 "$out.tmp"
    truncate -s $(( (start3 + data_mib * 2048) * 512 )) "$out.tmp"
    printf 'label: dos\nstart=%s, size=%s, type=c, bootable\nstart=%s, size=%s, type=83\nstart=%s, size=%s, type=83\n' \
        "$start1" $((boot_mib * 2048)) "$start2" $((root_mib * 2048)) "$start3" $((data_mib * 2048)) \
        | sfdisk --quiet "$out.tmp"
    dd if="$parts/boot.vfat" of="$out.tmp" bs=1M seek=$((start1 / 2048)) conv=notrunc,sparse status=none
    dd if="$parts/root.ext4" of="$out.tmp" bs=1M seek=$((start2 / 2048)) conv=notrunc,sparse status=none
    dd if="$parts/data.ext4" of="$out.tmp" bs=1M seek=$((start3 / 2048)) conv=notrunc,sparse status=none
}

full_image() {
    local out=$1 manifest
    STEPS=4
    [ "$BASE" = rpi ] && STEPS=5
    need_full_build_inputs
    trap cleanup EXIT
    case "$BASE" in
        rpi) base_rpi "$out" ;;
        debian) base_debian ;;
        *) die "--base must be rpi or debian, not '$BASE'" ;;
    esac
    finish_root
    manifest="$out.manifest.txt"
    cp "$MNT/usr/share/circlebox/image-manifest.txt" "$manifest"
    if [ "$BASE" = debian ]; then
        step "assembling the SD card image (boot, root, data partitions)"
        assemble_debian "$out"
    fi
    cleanup
    MNT="" LOOP="" WORK=""
    trap - EXIT
    mv "$out.tmp" "$out"
    sha256sum "$out" > "$out.sha256"
    log "done in $(( (SECONDS - STARTED) / 60 ))m$(( (SECONDS - STARTED) % 60 ))s: $out"
    log "  size: $(du -h --apparent-size "$out" | cut -f1) ($(du -h "$out" | cut -f1) used on disk)," \
        "sha256 $(cut -d' ' -f1 "$out.sha256")"
    log "  manifest: $manifest ($(grep -c $'\t' "$manifest") Debian packages, build $BUILD, base $BASE)"
    sed -n '/^mode=/,/^base=/p' "$manifest" | sed 's/^/image_build:    /' >&2
}

# lock_requirements: the sha256 of each pinned aarch64 wheel into image/requirements-pi.txt
# and of each pinned sdist into image/requirements-pi-sdist.txt (internet).
lock_requirements() {
    # shellcheck source=image/versions.env
    . "$REPO/image/versions.env"
    # shellcheck disable=SC2046  # one word per option
    lock_file "$REPO/image/requirements-pi.txt" --only-binary=:all: $(platform_args) \
        --python-version "$PYTHON_MINOR" --implementation cp
    lock_file "$REPO/image/requirements-pi-sdist.txt" --no-binary=:all:
    log "hashes written to image/requirements-pi*.txt: review and commit them"
}

lock_file() {
    local file=$1 label dir req name version hash found tmp
    shift
    label=$(basename "$file")
    dir=$(mktemp -d)
    tmp=$(mktemp)
    while read -r req; do
        case "$req" in ''|'#'*) echo "$req" >> "$tmp"; continue ;; esac
        req=${req%% *}
        name=${req%%==*}
        version=${req#*==}
        rm -f "$dir"/*
        "$(host_python)" -m pip download --quiet --no-deps "$@" "$name==$version" -d "$dir" >&2 \
            || die "$label: nothing to download for $name==$version"
        found=0
        for hash in "$dir"/*; do
            echo "$name==$version --hash=sha256:$(sha256sum "$hash" | cut -d' ' -f1)" >> "$tmp"
            found=1
        done
        [ "$found" = 1 ] || die "$name==$version: nothing downloaded"
    done < "$file"
    chmod 0644 "$tmp"
    mv "$tmp" "$file"
    rm -rf "$dir"
}

# --- command line -----------------------------------------------------------------------------

main() {
while [ $# -gt 0 ]; do
    case "$1" in
        --tree-only|--check|--image) MODE=${1#--}; TARGET=${2:?"$1 needs a path"}; shift ;;
        --lock) MODE=lock ;;
        --build) BUILD=${2:?--build needs a name}; shift ;;
        --pubkey) PUBKEYS+=("$(realpath -m -- "${2:?--pubkey needs a file}")"); shift ;;
        --with-vosk) VOSK=$(cd "${2:?--with-vosk needs a directory}" && pwd); shift ;;
        --wheelhouse) WHEELHOUSE=$(cd "${2:?--wheelhouse needs a directory}" && pwd); shift ;;
        --no-render) RENDER=0 ;;
        --base) BASE=${2:?--base needs rpi or debian}; shift ;;
        -h|--help) usage 0 ;;
        *) warn "unknown argument: $1"; usage 2 ;;
    esac
    shift
done

case "$MODE" in
    tree-only)
        [ ! -e "$TARGET" ] || [ -z "$(ls -A "$TARGET")" ] || die "$TARGET exists and is not empty"
        pubkeys
        install -d "$TARGET"
        TARGET=$(cd "$TARGET" && pwd)
        build_tree "$TARGET" tree
        run_check "$TARGET"
        ;;
    check) run_check "$TARGET" ;;
    image) pubkeys; full_image "$TARGET" ;;
    lock) lock_requirements ;;
    *) usage 2 ;;
esac
}

# Sourced (by tests), only the functions are defined.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
