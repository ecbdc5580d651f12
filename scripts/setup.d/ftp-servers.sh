#!/usr/bin/env bash
# The FTPS servers the test bed starts (tests/src/ftp/), installed idempotently:
#   - vsftpd from apt (it logs in local users through PAM, so it needs a real system user);
#   - ProFTPD (+ mod_tls from proftpd-mod-crypto) and Pure-FTPd unpacked from their .debs
#     into $FERRY_TESTBED_HOME: Debian's FTP servers all provide `ftp-server` and conflict,
#     so only one of them can be installed as a package;
#   - pyftpdlib + pyopenssl in the test bed's Python venv (shared with secret-stores.sh);
#   - Debian's ftpd-ssl (an old OpenSSL BSD ftpd) unpacked into $FERRY_TESTBED_HOME, run under
#     socat with a small LD_PRELOAD shim that loads its certificate (its build never does).
# Every step checks first, so a second run takes about a second.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
home="${FERRY_TESTBED_HOME:-$HOME/.cache/ferry-testbed}"
mkdir -p "$home"

apt_updated=no
apt_update_once() {
  if [ "$apt_updated" = no ] && ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
    apt-get update -qq
  fi
  apt_updated=yes
}

# Debian packages: vsftpd, the clients the smoke tests use, and the shared libraries the
# unpacked ProFTPD/Pure-FTPd binaries link against (dpkg -x does not pull dependencies).
packages=(vsftpd curl lftp rclone openssl socat libssl-dev gcc
  libhiredis0.14 libmemcached11 libmemcachedutil2 libsodium23 libpcre2-posix3 libidn2-0
  libcap2 libacl1)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_update_once
  # policy-rc.d 101: do not let the package start a system-wide vsftpd on port 21.
  policy=/usr/sbin/policy-rc.d
  created_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=yes
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ "$created_policy" = yes ] && rm -f "$policy"
fi
# The test bed starts its own vsftpd per test; a system-wide one is not wanted.
if pgrep -x vsftpd >/dev/null 2>&1 && [ -e /etc/init.d/vsftpd ]; then
  /etc/init.d/vsftpd stop >/dev/null 2>&1 || true
fi
mkdir -p /var/run/vsftpd/empty # vsftpd's secure_chroot_dir

# Unpack .debs that conflict as packages into their own folders under the test bed.
unpack() { # unpack DIR PACKAGE...
  local dir="$1"
  shift
  [ -f "$dir/.unpacked" ] && return 0
  apt_update_once
  local tmp
  tmp="$(mktemp -d)"
  chmod 755 "$tmp" # apt-get download runs as _apt
  (cd "$tmp" && apt-get download -qq "$@")
  rm -rf "$dir" && mkdir -p "$dir"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dir"; done
  rm -rf "$tmp"
  touch "$dir/.unpacked"
}
unpack "$home/proftpd" proftpd-core proftpd-mod-crypto
unpack "$home/pure-ftpd" pure-ftpd pure-ftpd-common
unpack "$home/ftpd-ssl" ftpd-ssl
# ftpd-ssl logs real users in through PAM service `ftp`.
if [ ! -f /etc/pam.d/ftp ]; then cp "$home/ftpd-ssl/etc/pam.d/ftp" /etc/pam.d/ftp; fi
shim_src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/infra/dev-servers/ftpd-ssl-certshim.c"
# World-readable: the server runs /bin/ls as the logged-in user with the shim preloaded.
shim=/usr/local/lib/ferry-testbed/ftpd-ssl-certshim.so
mkdir -p "$(dirname "$shim")"
if [ ! -f "$shim" ] || [ "$shim_src" -nt "$shim" ]; then
  gcc -O2 -shared -fPIC -o "$shim" "$shim_src" -ldl -lssl
fi
"$home/proftpd/usr/sbin/proftpd" -v >/dev/null
"$home/pure-ftpd/usr/sbin/pure-ftpd" --help >/dev/null 2>&1 || [ $? -le 1 ]

# vsftpd's test user: a real account (PAM), fixed test password, a valid shell (pam_shells),
# not listed in /etc/ftpusers (pam_listfile denies those), and a home that exists (vsftpd
# enters it before local_root). Tests chroot it to their own folder.
user=ferry-ftp
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir / --shell /bin/bash "$user"
fi
[ "$(getent passwd "$user" | cut -d: -f6)" = / ] || usermod --home / "$user"
if ! grep -qx /bin/bash /etc/shells; then echo /bin/bash >>/etc/shells; fi
echo "$user:ferry-ftp-test-password" | chpasswd
if [ -f /etc/ftpusers ]; then sed -i "/^$user\$/d" /etc/ftpusers; fi

# pyftpdlib in the shared venv (another setup part may have created it already).
venv="$home/venv"
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    apt_update_once
    apt-get install -y -qq python3-venv
    /usr/bin/python3 -m venv "$venv"
  fi
fi
if ! "$venv/bin/python" -c 'import pyftpdlib, OpenSSL' 2>/dev/null; then
  "$venv/bin/pip" install -q 'pyftpdlib>=2,<3' 'pyopenssl'
fi
echo "ftp servers: vsftpd $(dpkg-query -W -f='${Version}' vsftpd), proftpd, pure-ftpd and ftpd-ssl in $home, pyftpdlib in $venv"
