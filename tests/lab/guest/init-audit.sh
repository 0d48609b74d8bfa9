#!/bin/sh
# Scenario 1 (the hardware audit): run as PID 1 by /sbin/lab-stub from the LABIN disk (mounted at /lab).
# Starts udev (without it lsblk loses serials and WWNs), loads the IPMI drivers, adds SEL records and kernel
# error lines for the audit to find, records what the real tools print, runs the audit, then writes everything as a tar archive onto the LABOUT disk and powers off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
out=/results
raw=$out/raw

mark() {
    echo "lab: $* (uptime $(cut -d' ' -f1 /proc/uptime))"
    echo "$(cut -d' ' -f1 /proc/uptime) $*" >> "$out/timeline.txt"
}

# A tool's stdout, stderr and exit status under $raw/<name>.{out,err,rc}.
record() {
    tool_name=$1
    shift
    "$@" > "$raw/$tool_name.out" 2> "$raw/$tool_name.err"
    echo $? > "$raw/$tool_name.rc"
}

disk_with_serial() {
    for block in /sys/block/vd*; do
        [ "$(cat "$block/serial" 2>/dev/null)" = "$1" ] && echo "/dev/${block##*/}"
    done
}

finish() {
    mark "writing results"
    dmesg > "$out/dmesg.txt" 2>&1
    labout=$(disk_with_serial LABOUT)
    tar -cf "$labout" -C "$out" .
    sync
    echo "lab: done"
    echo o > /proc/sysrq-trigger
    sleep 30
}

mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mkdir -p "$out" "$raw"
mount -t tmpfs tmpfs "$out"
mkdir -p "$raw"
mark "init started"
hostname lab

udevd=/lib/systemd/systemd-udevd
[ -x "$udevd" ] || udevd=/usr/lib/systemd/systemd-udevd
"$udevd" --daemon
udevadm trigger --action=add --type=subsystems
udevadm trigger --action=add --type=devices
udevadm settle --timeout=60
mark "udev settled"
modprobe ipmi_si
modprobe ipmi_devintf
udevadm settle --timeout=30
i=0
while [ ! -e /dev/ipmi0 ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
mark "ipmi ready: $(ls /dev/ipmi* 2>/dev/null)"
# USB and SCSI disks appear asynchronously: wait (bounded) until udev has named every expected serial.
expected_serials=$(cat /lab/expect-serials)
i=0
while [ $i -lt 120 ]; do
    serials=" $(lsblk -dn -o SERIAL | tr '\n' ' ')"
    missing=""
    for serial in $expected_serials; do
        case $serials in *" $serial "*) ;; *) missing="$missing $serial" ;; esac
    done
    [ -z "$missing" ] && break
    sleep 0.5
    udevadm settle --timeout=10
    i=$((i + 1))
done
mark "disks ready (missing:${missing:- none})"

# Health faults the audit must find (tests/lab/expected.py): SEL records through the BMC, kernel error
# lines through /dev/kmsg (@SATA@ becomes the SATA disk's kernel name).
record ipmitool-sel-add ipmitool sel add /lab/sel-events
sata=$(lsblk -dn -o NAME,SERIAL | awk -v serial="$(cat /lab/sata-serial)" '$2 == serial { print $1 }')
while IFS= read -r line; do
    printf '%s\n' "$line" | sed "s/@SATA@/$sata/" > /dev/kmsg
done < /lab/kmsg-lines
mark "health faults injected (SATA disk: $sata)"

record dmidecode dmidecode
record dmidecode-types dmidecode -t 0,1,2,3,4,16,17
record lsblk lsblk -J -b -O
record lspci-vmm lspci -vmm -D
record lspci-vvv lspci -vvv -D
record nvme-list nvme list -o json
record nvme-id-ctrl nvme id-ctrl -o json /dev/nvme0
record nvme-smart-log nvme smart-log -o json /dev/nvme0
for block in /sys/block/*; do
    name=${block##*/}
    case $name in loop*|ram*|vd*) continue ;; esac
    case $name in nvme*n*) name=${name%n*} ;; esac   # SMART of an NVMe disk is its controller's
    record "smartctl-$name" smartctl -j -a "/dev/$name"
done
record ipmitool-fru ipmitool fru
record ipmitool-fru-print0 ipmitool fru print 0
record ipmitool-fru-print1 ipmitool fru print 1
record ipmitool-mc-info ipmitool mc info
record ipmitool-sdr-elist ipmitool sdr elist
record ipmitool-sel-list ipmitool sel list
record dmesg dmesg
for net in /sys/class/net/*; do
    [ -e "$net/device" ] || continue   # hardware only, as the audit lists them
    record "ethtool-i-${net##*/}" ethtool -i "${net##*/}"
    record "net-address-${net##*/}" cat "$net/address"
done
for dev in /sys/bus/pci/devices/*; do
    printf '%s class=%s cur=%s/x%s max=%s/x%s\n' "${dev##*/}" "$(cat "$dev/class")" \
        "$(cat "$dev/current_link_speed" 2>/dev/null)" "$(cat "$dev/current_link_width" 2>/dev/null)" \
        "$(cat "$dev/max_link_speed" 2>/dev/null)" "$(cat "$dev/max_link_width" 2>/dev/null)"
done > "$raw/pci-link.out"
mark "raw tools recorded"

cp /lab/audit.py /tmp/audit.py
mkdir -p "$out/capture"
# shellcheck disable=SC2046  # the options file holds one argument per word
python3 /tmp/audit.py --output "$out/audit.json" $(cat /lab/audit-options) --capture "$out/capture" \
    > "$out/audit.stdout" 2> "$out/audit.stderr"
echo $? > "$out/audit.rc"
mark "audit finished (exit $(cat "$out/audit.rc"))"

# The injected faults are dealt with before the acceptance audits, as a person does after reading them:
# the SEL cleared (bee never clears it), the kernel's ring buffer emptied. The second audit below then
# sees a healthy server.
record ipmitool-sel-clear ipmitool sel clear
dmesg -C

# Acceptance: a profile made from this server's document, put on the USB stick as bee-profile.json and
# found there by a second full audit (--expect-live, as the live system looks for it on the next boot);
# then a profile expecting every DIMM slot populated, checked against this boot's document.
acc=$out/acceptance
mkdir -p "$acc" /mnt/stick
python3 /tmp/audit.py --no-qr --document "$out/audit.json" --make-profile "$acc/made.json" \
    > /dev/null 2> "$acc/make.stderr"
echo $? > "$acc/make.rc"
if mount -L "$(cat /lab/usb-label)" /mnt/stick 2> "$acc/mount.stderr"; then
    cp "$acc/made.json" /mnt/stick/bee-profile.json
    umount /mnt/stick
fi
python3 /tmp/audit.py --no-qr --output "$acc/made-check.json" --expect-live /nonexistent --strict \
    > /dev/null 2> "$acc/made-check.stderr"
echo $? > "$acc/made-check.rc"
python3 /tmp/audit.py --no-qr --document "$out/audit.json" --output "$acc/all-dimms.json" \
    --expect /lab/profile-all-dimms.json --strict > /dev/null 2> "$acc/all-dimms.stderr"
echo $? > "$acc/all-dimms.rc"
mark "acceptance checked"
finish
