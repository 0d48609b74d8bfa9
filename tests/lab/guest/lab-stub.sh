#!/bin/sh
# Baked into the lab's guest image as /sbin/lab-stub (the kernel's init=): mounts what the kernel gives,
# finds the virtio disk whose serial is LABIN (built by the test at every run) and hands over to its init.
# Keep it tiny and stable: any change to this file rebuilds the cached guest image.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
lab_disk=""
for block in /sys/block/vd*; do
    [ "$(cat "$block/serial" 2>/dev/null)" = LABIN ] && lab_disk="/dev/${block##*/}"
done
if [ -z "$lab_disk" ]; then
    echo "lab-stub: no virtio disk with serial LABIN" >&2
    echo o > /proc/sysrq-trigger
fi
mkdir -p /lab
mount -o ro "$lab_disk" /lab
echo "lab-stub: running /lab/init from $lab_disk"
exec /lab/init "$@"
