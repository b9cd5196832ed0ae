#!/bin/bash
# Runs inside `unshare --mount --uts --propagation private` (see SecondHost.ts).
# Gives the second libvirtd its private /run, /etc/libvirt, /var/lib/libvirt, /var/log/libvirt and
# /var/cache/libvirt, then starts virtlogd and libvirtd daemonized. $1 = the host's state directory.
set -euo pipefail
N=$1
hostname "${2:-host2}"
mount --bind "$N/run" /run
mkdir -p /run/lock /run/libvirt
mount --bind "$N/etc" /etc/libvirt
mount --bind "$N/varlib" /var/lib/libvirt
mount --bind "$N/log" /var/log/libvirt
mount --bind "$N/cache" /var/cache/libvirt
/usr/sbin/virtlogd -d
/usr/sbin/virtlockd -d
/usr/sbin/libvirtd -d
