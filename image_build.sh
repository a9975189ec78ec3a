#!/bin/bash
# Build the Circlebox SD-card image, or just the files that go into it.
#
#   ./image_build.sh --tree-only OUT_DIR [options]   files of the image in OUT_DIR (no root, no
#                                                    base image; runs in CI)
#   ./image_build.sh --check ROOT_DIR                check a tree or a mounted image root
#   ./image_build.sh --image OUT.img [options]       the full image (root, internet, Linux with
#                                                    qemu-user-static + binfmt for arm64)
#   ./image_build.sh --lock                          add aarch64 wheel hashes to
#                                                    image/requirements-pi.txt (internet)
# Options:
#   --pubkey FILE       the programme's update-signing public key (.pub from `circlebox bundle
#                       keygen`); required, repeat it for several keys. Without one the box
#                       refuses every update (U04)
#   --build NAME        audio build from firmware_config/builds (default i2s-amp-usb-mic)
#   --with-vosk DIR     bake an unpacked vosk model directory into the data partition
#   --no-render         do not pre-render the prompts (or set CIRCLEBOX_IMAGE_NO_RENDER=1)
#   --wheelhouse DIR    (tree only) also install the dependencies from wheels in DIR
#
# Pinned inputs: image/versions.env (base image URL + sha256, sizes) and
# image/requirements-pi.txt (Python packages, with hashes). docs/setup-a-box.md explains the
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
[ "${CIRCLEBOX_IMAGE_NO_RENDER:-0}" = 1 ] && RENDER=0

log() { printf 'image_build: %s\n' "$*" >&2; }
warn() { printf 'image_build: WARNING: %s\n' "$*" >&2; }
die() { printf 'image_build: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

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
    find "$root/var/lib/circlebox/cache" -type f | grep -q . || die "render made no files"
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

MNT=""
LOOP=""
cleanup() {
    set +e
    if [ -n "$MNT" ]; then
        for m in etc/resolv.conf dev/pts dev proc sys run var/lib/circlebox boot/firmware ""; do
            mountpoint -q "$MNT/$m" && umount "$MNT/$m"
        done
        rmdir "$MNT"
    fi
    [ -n "$LOOP" ] && losetup -d "$LOOP"
}

need_full_build_inputs() {
    # shellcheck source=image/versions.env
    . "$REPO/image/versions.env"
    case "$RPI_OS_SHA256" in
        FILL-ME*|"") die "image/versions.env: RPI_OS_SHA256 is not filled in (see the comment there)" ;;
    esac
    [[ $RPI_OS_SHA256 =~ ^[0-9a-f]{64}$ ]] || die "RPI_OS_SHA256 is not a sha256"
    if grep -E '^[A-Za-z0-9_.-]+==' "$REPO/image/requirements-pi.txt" | grep -qv -- '--hash=sha256:'; then
        die "image/requirements-pi.txt has requirements without hashes: run --lock first"
    fi
    [ "$(id -u)" = 0 ] || die "--image needs root (loop devices, mounts, chroot)"
    for tool in curl xz sfdisk losetup resize2fs mkfs.ext4 chroot sha256sum; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || [ "$(uname -m)" = aarch64 ] \
        || die "no arm64 emulation: install qemu-user-static and binfmt-support"
}

download_base() {
    local cache=${CIRCLEBOX_IMAGE_CACHE:-$REPO/build/image-cache} file
    file="$cache/$(basename "$RPI_OS_URL")"
    install -d "$cache"
    if [ ! -f "$file" ]; then
        log "downloading $RPI_OS_URL"
        curl -fL --retry 3 -o "$file.part" "$RPI_OS_URL"
        mv "$file.part" "$file"
    fi
    echo "$RPI_OS_SHA256  $file" | sha256sum -c --quiet - \
        || die "$file does not match RPI_OS_SHA256: delete it and check the pin"
    echo "$file"
}

fetch_wheelhouse() {
    local dir=$1
    "$(host_python)" -m pip download --quiet --require-hashes --no-deps --only-binary=:all: \
        --platform "$WHEEL_PLATFORM" --python-version "$PYTHON_MINOR" --implementation cp \
        -r "$REPO/image/requirements-pi.txt" -d "$dir" >&2
}

install_app_chroot() {
    local root=$1
    install -d -m 0755 "$root/opt/circlebox/wheels"
    build_wheel "$root/opt/circlebox/wheels"
    fetch_wheelhouse "$root/opt/circlebox/wheels"
    install -m 0644 "$REPO/image/requirements-pi.txt" "$root/opt/circlebox/wheels/requirements.txt"
    chroot "$root" /bin/sh -euc "
        python3 -m venv /opt/circlebox/venv
        /opt/circlebox/venv/bin/pip install --quiet --no-index --find-links /opt/circlebox/wheels \
            --require-hashes -r /opt/circlebox/wheels/requirements.txt
        /opt/circlebox/venv/bin/pip install --quiet --no-index --no-deps /opt/circlebox/wheels/circlebox-*.whl
        /opt/circlebox/venv/bin/circlebox --help >/dev/null
    "
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

full_image() {
    local out=$1 base part
    need_full_build_inputs
    trap cleanup EXIT
    base=$(download_base)
    log "unpacking $(basename "$base")"
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
    for part in dev dev/pts proc sys run; do mount --bind "/$part" "$MNT/$part"; done
    cp --remove-destination /etc/resolv.conf "$MNT/etc/resolv.conf.circlebox-build"
    mount --bind "$MNT/etc/resolv.conf.circlebox-build" "$MNT/etc/resolv.conf" 2>/dev/null \
        || cp /etc/resolv.conf "$MNT/etc/resolv.conf"
    log "installing Debian packages: $APT_PACKAGES"
    # shellcheck disable=SC2086  # a list of package names
    chroot "$MNT" /bin/sh -euc "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends $APT_PACKAGES"
    build_tree "$MNT" chroot
    systemd-sysusers --root="$MNT" "$MNT/usr/lib/sysusers.d/circlebox.conf"
    chroot "$MNT" systemd-tmpfiles --create /usr/lib/tmpfiles.d/circlebox.conf
    chroot "$MNT" dpkg-query -W >> "$MNT/usr/share/circlebox/image-manifest.txt"
    rm -f "$MNT/var/cache/apt/archives"/*.deb
    umount "$MNT/etc/resolv.conf" 2>/dev/null || true
    rm -f "$MNT/etc/resolv.conf.circlebox-build"
    # The host's /dev, /proc... must not be in what --check walks.
    for part in dev/pts dev proc sys run; do umount "$MNT/$part"; done
    run_check "$MNT"
    cleanup
    MNT="" LOOP=""
    trap - EXIT
    mv "$out.tmp" "$out"
    sha256sum "$out" > "$out.sha256"
    log "done: $out ($(cut -d' ' -f1 "$out.sha256"))"
}

lock_requirements() {
    # shellcheck source=image/versions.env
    . "$REPO/image/versions.env"
    local dir req name version hash file tmp
    dir=$(mktemp -d)
    tmp=$(mktemp)
    while read -r req; do
        case "$req" in ''|'#'*) echo "$req" >> "$tmp"; continue ;; esac
        req=${req%% *}
        name=${req%%==*}
        version=${req#*==}
        rm -f "$dir"/*
        "$(host_python)" -m pip download --quiet --no-deps --only-binary=:all: \
            --platform "$WHEEL_PLATFORM" --python-version "$PYTHON_MINOR" --implementation cp \
            "$name==$version" -d "$dir" >&2 || die "no aarch64 wheel for $name==$version"
        for file in "$dir"/*; do
            hash=$(sha256sum "$file" | cut -d' ' -f1)
            echo "$name==$version --hash=sha256:$hash" >> "$tmp"
        done
    done < "$REPO/image/requirements-pi.txt"
    chmod 0644 "$tmp"
    mv "$tmp" "$REPO/image/requirements-pi.txt"
    rm -rf "$dir"
    log "hashes written to image/requirements-pi.txt: review and commit it"
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
