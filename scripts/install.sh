#!/usr/bin/env bash
# Installs the SMP router and the XFTP server as systemd services:
# binaries in /usr/local/bin, a system user for each (smp, xftp), their
# directories (0700, the reference's paths), an identity made by each
# server's `init`, and the units from dist/systemd, enabled.
#
# Safe to run again (after an upgrade, to install new binaries): an
# existing identity is never replaced and existing users, directories and
# configuration are kept. `--root DIR` installs into DIR instead of /
# (a throwaway root for testing, or an image being built); the services are
# then enabled in DIR and nothing is started.
set -euo pipefail

usage() {
  cat <<'EOT'
usage: scripts/install.sh [options]
  --root DIR         install into DIR instead of / (nothing is started)
  --bin DIR          where the built smp-server and xftp-server are
                     (default: target/release of this checkout)
  --fqdn NAME        the servers' domain name (certificates and addresses)
  --ip ADDRESS       the address clients use when there is no domain name
  --xftp-quota SIZE  storage for XFTP files (default: 10gb)
  --no-smp           leave the SMP router out
  --no-xftp          leave the XFTP server out
  --start            start the services now (not with --root)
EOT
}

here="$(cd "$(dirname "$0")/.." && pwd)"
root=""
bin="$here/target/release"
fqdn=""
ip=""
quota="10gb"
smp=1
xftp=1
start=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="${2:?--root needs a directory}"; shift 2 ;;
    --bin) bin="${2:?--bin needs a directory}"; shift 2 ;;
    --fqdn) fqdn="${2:?--fqdn needs a name}"; shift 2 ;;
    --ip) ip="${2:?--ip needs an address}"; shift 2 ;;
    --xftp-quota) quota="${2:?--xftp-quota needs a size}"; shift 2 ;;
    --no-smp) smp=0; shift ;;
    --no-xftp) xftp=0; shift ;;
    --start) start=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
if [ -n "$root" ]; then
  root="$(cd "$root" && pwd)"
  [ "$start" -eq 0 ] || { echo "install.sh: --start cannot be used with --root" >&2; exit 2; }
fi
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (it creates users and system directories)" >&2; exit 1; }

say() { echo "install.sh: $*"; }

# A system user with no login and no home of its own, in $root's files.
ensure_user() {
  local name="$1" home="$2"
  if grep -q "^$name:" "$root/etc/passwd" 2>/dev/null; then
    say "user $name exists"
  else
    local prefix=()
    [ -n "$root" ] && prefix=(--prefix "$root")
    useradd "${prefix[@]}" --system --user-group --no-create-home \
      --home-dir "$home" --shell /usr/sbin/nologin "$name"
    say "created user $name"
  fi
}

uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$root/etc/passwd"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $4 }' "$root/etc/passwd"; }

# A directory owned by the service user, 0700; an existing one keeps its
# contents, its owner and mode are set again.
ensure_dir() {
  local dir="$root$1" user="$2"
  mkdir -p "$dir"
  chown "$(uid_of "$user"):$(gid_of "$user")" "$dir"
  chmod 0700 "$dir"
}

install_bin() {
  local name="$1"
  [ -x "$bin/$name" ] || { echo "install.sh: $bin/$name not found: build it first (cargo build --release)" >&2; exit 1; }
  install -D -m 0755 "$bin/$name" "$root/usr/local/bin/$name"
  say "installed /usr/local/bin/$name"
}

install_unit() {
  local name="$1"
  install -D -m 0644 "$here/dist/systemd/$name.service" "$root/etc/systemd/system/$name.service"
  if [ -n "$root" ]; then
    systemctl --root="$root" enable "$name.service" >/dev/null 2>&1
  else
    systemctl daemon-reload
    systemctl enable "$name.service"
  fi
  say "installed and enabled $name.service"
}

# Files created as root in a service's directories go to its user.
give_to() {
  local user="$1"; shift
  chown -R "$(uid_of "$user"):$(gid_of "$user")" "$@"
}

# Whether a server's configuration directory already holds an identity or
# its INI (either means init has run there: never run it again).
initialised() {
  local cfg="$root$1" ini="$2"
  [ -e "$cfg/ca.key" ] || [ -e "$cfg/server.key" ] || [ -e "$cfg/$ini" ]
}

identity_args=()
[ -n "$fqdn" ] && identity_args+=(--fqdn "$fqdn")
[ -n "$ip" ] && identity_args+=(--ip "$ip")

if [ "$smp" -eq 1 ]; then
  cfg=/etc/opt/simplex
  log=/var/opt/simplex
  install_bin smp-server
  ensure_user smp "$log"
  ensure_dir "$cfg" smp
  ensure_dir "$log" smp
  if initialised "$cfg" smp-server.ini; then
    say "keeping the SMP router's existing identity and configuration in $cfg"
  else
    SMP_SERVER_CFG_PATH="$root$cfg" SMP_SERVER_LOG_PATH="$root$log" \
      "$root/usr/local/bin/smp-server" init --yes "${identity_args[@]}"
  fi
  give_to smp "$root$cfg" "$root$log"
  install_unit smp-server
fi

if [ "$xftp" -eq 1 ]; then
  cfg=/etc/opt/simplex-xftp
  log=/var/opt/simplex-xftp
  files=/srv/xftp
  install_bin xftp-server
  ensure_user xftp "$log"
  ensure_dir "$cfg" xftp
  ensure_dir "$log" xftp
  ensure_dir "$files" xftp
  if initialised "$cfg" file-server.ini; then
    say "keeping the XFTP server's existing identity and configuration in $cfg"
  else
    XFTP_SERVER_CFG_PATH="$root$cfg" XFTP_SERVER_LOG_PATH="$root$log" \
      "$root/usr/local/bin/xftp-server" init -p "$root$files" -q "$quota" "${identity_args[@]}"
    if [ -n "$root" ]; then
      # init wrote the paths it was given; the installed system sees them
      # without the root in front.
      sed -i "s#$root/#/#g" "$root$cfg/file-server.ini"
    fi
  fi
  give_to xftp "$root$cfg" "$root$log" "$root$files"
  install_unit xftp-server
fi

if [ "$start" -eq 1 ]; then
  [ "$smp" -eq 1 ] && systemctl restart smp-server.service
  [ "$xftp" -eq 1 ] && systemctl restart xftp-server.service
  say "started; see: systemctl status smp-server xftp-server"
fi
