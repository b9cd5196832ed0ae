#!/bin/busybox sh
# /init of Cairn's tiny lab guest: busybox + qemu-guest-agent, no udev, no systemd.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mkdir -p /dev/pts; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /run
echo "init: uptime $(cut -d' ' -f1 /proc/uptime)s loading modules" > /dev/console
# virtio and ext4 are modules in Debian's kernel; load.list is in dependency order.
for m in $(cat /lib/modules/load.list); do insmod /lib/modules/$m 2>/dev/null; done
for i in $(seq 1 100); do [ -b /dev/vda ] && ls /sys/class/virtio-ports/*/name >/dev/null 2>&1 && break; sleep 0.1; done
# udev would create /dev/virtio-ports/<name>; qemu-ga needs org.qemu.guest_agent.0 there.
mkdir -p /dev/virtio-ports
for p in /sys/class/virtio-ports/*; do
  [ -f $p/name ] && ln -sf /dev/$(basename $p) /dev/virtio-ports/$(cat $p/name)
done
mount -t ext4 /dev/vda /data 2>/dev/null && echo "init: /dev/vda mounted on /data" > /dev/console
# ACPI power button (virsh shutdown) -> clean poweroff
acpid -c /etc/acpi 2>/dev/null
if [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then
  /usr/sbin/qemu-ga -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 -l /var/log/qemu-ga.log -t /run &
  echo "init: AGENT-STARTED uptime $(cut -d' ' -f1 /proc/uptime)s" > /dev/console
else
  echo "init: no guest agent channel" > /dev/console
fi
echo "init: READY" > /dev/console
while true; do sleep 3600; done
