#!/usr/bin/env bash
# Installs a Cairn release on this host for one role; safe to run again (upgrades, repairs).
#
#   install.sh --role coordinator|agent|mover [--prefix DIR] [--root DIR] [--tarball FILE]
#
#   --role     coordinator: unit cairn-coordinator.service, runs as the system user cairn (created)
#              agent:       unit cairn-agent.service, runs as root
#              mover:       unit cairn-mover.service (an agent without libvirt), runs as root
#   --tarball  the release (scripts/package.sh builds it); default: the unpacked release this script
#              is part of
#   --prefix   where Cairn lives (default <root>/opt/cairn): the release goes to <prefix>-<version>,
#              and <prefix> becomes a symlink to it, switched in one step
#   --root     install the system files (units, /etc/cairn, state directories, /usr/local/bin links,
#              the cairn user in <root>/etc/passwd) under DIR instead of /, with units and configs
#              naming the paths under DIR: an install to try or test without touching the host's
#              /etc, /opt and /var. Default /.
#
# It never overwrites /etc/cairn/<role>.yaml: it creates it from the example when there is none,
# and refreshes <role>.yaml.example. It does not enable or start the unit.
set -euo pipefail

me=install.sh
die() {
  echo "$me: $*" >&2
  exit 1
}
usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
}

role="" prefix="" root="/" tarball=""
while (($#)); do
  case "$1" in
    --role | --prefix | --root | --tarball)
      (($# >= 2)) || die "$1 needs a value"
      declare "${1#--}=$2"
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

case "$role" in
  coordinator | agent | mover) ;;
  "") die "--role is required: coordinator, agent or mover" ;;
  *) die "unknown role '$role': use coordinator, agent or mover" ;;
esac
[[ "$(id -u)" == 0 ]] || die "must run as root: it creates the cairn user and writes units, /etc/cairn and state directories"
[[ "$root" == /* ]] || die "--root must be an absolute path, got '$root'"
root="${root%/}"
[[ -d "${root:-/}" ]] || die "--root $root does not exist"
prefix="${prefix:-$root/opt/cairn}"
prefix="${prefix%/}"
[[ "$prefix" == /* ]] || die "--prefix must be an absolute path, got '$prefix'"
if [[ -e "$prefix" && ! -L "$prefix" ]]; then
  die "$prefix exists and is not a symlink to a Cairn release: move it away first"
fi

# The release to install: a tarball, or the unpacked release around this script.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -z "$tarball" || -f "$tarball" ]] || die "tarball $tarball not found (build one with scripts/package.sh)"
# Unpacked next to the prefix, so the release moves into place by rename rather than by a copy.
mkdir -p "$(dirname "$prefix")"
work=$(mktemp -d "$(dirname "$prefix")/.cairn-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [[ -n "$tarball" ]]; then
  tar -xzf "$tarball" -C "$work" || die "cannot unpack $tarball"
  shopt -s nullglob
  tops=("$work"/cairn-*/)
  shopt -u nullglob
  ((${#tops[@]} == 1)) || die "$tarball is not a Cairn release (expected one top directory cairn-<version>/)"
  release="${tops[0]%/}"
elif [[ -f "$here/RELEASE" ]]; then
  release="$here"
else
  die "no release to install: pass --tarball FILE (scripts/package.sh builds dist-release/cairn-<version>-linux-x64.tar.gz)"
fi
[[ -f "$release/RELEASE" && -d "$release/node_modules" && -d "$release/dist" ]] ||
  die "$release is not a complete Cairn release (no RELEASE, node_modules or dist)"
release_field() { sed -n "s/^$1=//p" "$release/RELEASE"; }
version=$(release_field version)
[[ -n "$version" ]] || die "$release/RELEASE names no version"

# The units start /usr/bin/node, and the release's native addons load only into the Node ABI they
# were built for.
node=/usr/bin/node
[[ -x "$node" ]] || die "no Node.js at $node (the units start it): install Node.js 20 or later"
want_abi=$(release_field nodeModules)
have_abi=$("$node" -p process.versions.modules)
[[ "$have_abi" == "$want_abi" ]] ||
  die "$node is Node.js $("$node" -p process.versions.node) (ABI $have_abi); this release was built with Node.js $(release_field node) (ABI $want_abi)"

unit="cairn-$role.service"
[[ -f "$release/systemd/$unit" ]] || die "the release has no systemd/$unit"
[[ -f "$release/examples/$role.yaml" ]] || die "the release has no examples/$role.yaml"

# Paths the shipped units and configs name, and where this install puts them.
etc="$root/etc/cairn"
state="$root/var/lib/cairn-$role"
sed_escape() { printf '%s' "$1" | sed 's/[#&\\]/\\&/g'; }
rewrite() {
  # Through placeholders: a new path may itself contain one of the old ones (a --root under /var/lib/cairn-*).
  sed -e 's#/opt/cairn/#@CAIRN_PREFIX@/#g' -e 's#/etc/cairn/#@CAIRN_ETC@/#g' \
    -e 's#/var/lib/cairn-#@CAIRN_VARLIB@/cairn-#g' \
    -e "s#@CAIRN_PREFIX@#$(sed_escape "$prefix")#g" -e "s#@CAIRN_ETC@#$(sed_escape "$root/etc/cairn")#g" \
    -e "s#@CAIRN_VARLIB@#$(sed_escape "$root/var/lib")#g" "$1"
}
unit_value() { sed -n "s/^$1=//p" "$release/systemd/$unit" | tail -n 1; }

# 1. The release: <prefix>-<version>, replaced whole when reinstalled, then the prefix symlink.
dest="$prefix-$version"
new="$dest.new.$$"
old="$dest.old.$$"
if [[ "$release" == "$work"/* ]]; then
  mv -T "$release" "$new" # the tarball's files are root's already (package.sh, tar as root)
else
  cp -a "$release/." "$new"
  # Root runs this code: nobody else may own it, whoever unpacked it.
  chown -R 0:0 "$new"
fi
if [[ -e "$dest" ]]; then mv -T "$dest" "$old"; fi
mv -T "$new" "$dest"
rm -rf "$old"
release="$dest" # the rest reads the installed copy
ln -sfn "$(basename "$dest")" "$prefix.link.$$"
mv -T "$prefix.link.$$" "$prefix"
echo "installed Cairn $version in $dest ($prefix -> $(basename "$dest"))"

# 2. The user the unit runs as (the coordinator's cairn; the agent runs as root).
user=$(unit_value User)
user="${user:-root}"
group=$(unit_value Group)
group="${group:-$user}"
# Users as the installed system sees them: NSS on this host, <root>/etc/passwd and group under --root.
lookup() { # <passwd|group> <name>
  if [[ -z "$root" ]]; then
    getent "$1" "$2" || true
  else
    [[ -f "$root/etc/$1" ]] || die "$root/etc/$1 does not exist: --root must hold the user database"
    awk -F: -v n="$2" '$1 == n { print; exit }' "$root/etc/$1"
  fi
}
field3() { cut -d: -f3; }
if [[ "$user" != root ]]; then
  if [[ -z "$(lookup passwd "$user")" ]]; then
    root_args=()
    [[ -n "$root" ]] && root_args=(--root "$root")
    if [[ -n "$(lookup group "$group")" ]]; then group_args=(--gid "$group"); else group_args=(--user-group); fi
    useradd "${root_args[@]}" --system "${group_args[@]}" --home-dir "${state#"$root"}" --no-create-home \
      --shell /usr/sbin/nologin --comment "Cairn $role" "$user" ||
      die "useradd $user failed"
    echo "created system user $user"
  fi
fi
uid=$(lookup passwd "$user" | field3)
gid=$(lookup group "$group" | field3)
[[ -n "$uid" && -n "$gid" ]] || die "user $user or group $group is missing from $root/etc/passwd or $root/etc/group"

# 3. State directory, with the owner and mode the unit's StateDirectory gives it.
mode=$(unit_value StateDirectoryMode)
install -d -m "${mode:-0700}" -o "$uid" -g "$gid" "$state"

# 4. The unit, naming this install's paths.
sysd="$root/etc/systemd/system"
install -d -m 0755 "$sysd"
rewrite "$release/systemd/$unit" >"$work/$unit"
if ! cmp -s "$work/$unit" "$sysd/$unit"; then
  install -m 0644 "$work/$unit" "$sysd/$unit"
  echo "installed $sysd/$unit (run systemctl daemon-reload if it was there before)"
fi

# 5. Configuration: the example is refreshed, the operator's config never touched.
install -d -m 0755 "$etc"
rewrite "$release/examples/$role.yaml" >"$work/$role.yaml"
install -m 0644 "$work/$role.yaml" "$etc/$role.yaml.example"
if [[ ! -e "$etc/$role.yaml" ]]; then
  # Readable by the daemon's group, not by everyone: it may name secrets' files.
  install -m 0640 -o 0 -g "$gid" "$work/$role.yaml" "$etc/$role.yaml"
  echo "created $etc/$role.yaml from the example: edit it before starting the service"
else
  echo "kept $etc/$role.yaml (the current example is $etc/$role.yaml.example)"
fi

# 6. Commands on PATH.
bin="$root/usr/local/bin"
install -d -m 0755 "$bin"
ln -sfn "$prefix/cli/bin/cairn.cjs" "$bin/cairn"
if [[ "$role" == agent || "$role" == mover ]]; then ln -sfn "$prefix/agent/bin/cairn-agent.cjs" "$bin/cairn-agent"; fi

if [[ "$role" == coordinator ]]; then
  cat <<EOF
next, once: runuser -u $user -- $bin/cairn ca init --config $etc/coordinator.yaml [--dns <name>] [--ip <address>]
then:       systemctl daemon-reload && systemctl enable --now $unit
EOF
else
  cat <<EOF
next: copy the coordinator's ca.pem to $etc/ca.pem, get a token there (cairn hosts enroll-token <host-id>), then
      cairn-agent enroll --config $etc/$role.yaml --token <token> --ca-file $etc/ca.pem
      systemctl daemon-reload && systemctl enable --now $unit
EOF
fi
