#!/bin/sh
# Installs everything the tests need (Debian packages, then a virtualenv in .venv) and runs them.
# Run as root on Debian 12. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")"

# Real tools the tests run instead of mocking them (README.md: the paragraph after the set-up commands).
APT_PACKAGES="python3-venv busybox shellcheck qrencode zbar-tools dmidecode screen makeself
 linux-headers-amd64 build-essential kmod binutils util-linux pciutils smartmontools nvme-cli ipmitool ethtool
 qemu-system-x86 qemu-utils debootstrap e2fsprogs lshw curl fakeroot cpio doas passwd chromium nginx openssl"

missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "test.sh: installing Debian packages:$missing" >&2
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
