#!/bin/sh
# Debian packages the test suite drives for real: espeak-ng (other speakers for the listening
# tests), sox, alsa-utils (arecord/aplay), chromium (admin page browser tests) and systemd
# (systemd-analyze verify for the unit files). Installs only what is missing.
set -eu
need=""
command -v espeak-ng >/dev/null 2>&1 || need="$need espeak-ng"
command -v sox >/dev/null 2>&1 || need="$need sox"
command -v arecord >/dev/null 2>&1 || need="$need alsa-utils"
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v systemd-analyze >/dev/null 2>&1 || need="$need systemd"
command -v shellcheck >/dev/null 2>&1 || need="$need shellcheck"  # image_build.sh lint test
[ -x /usr/sbin/sfdisk ] || [ -x /sbin/sfdisk ] || need="$need fdisk"  # image partition test
# recordings of real people reading (the listening tests' and bench's rooms): BSD-2 / public
# domain (pocketsphinx test data, a LibriVox reader) and LGPL-2.1 (codec2's speech samples)
[ -d /usr/share/pocketsphinx/test/data/librivox ] || need="$need pocketsphinx-testdata"
[ -d /usr/share/codec2/raw ] || need="$need codec2-examples"
[ -z "$need" ] && exit 0
echo "installing Debian packages:$need"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
