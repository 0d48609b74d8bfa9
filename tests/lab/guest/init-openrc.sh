#!/bin/sh
# Scenario 2 (the boot sequence): run as PID 1 by /sbin/lab-stub from the LABIN disk (mounted at /lab).
# Makes the Debian guest boot like the live system: our services (staged from openrc/ by the test) in the
# default runlevel, a stand-in for Alpine's stock dropbear service and for localmount, the busybox
# applets Alpine has (udhcpc, ip) and a busybox-style adduser; then hands over to sysvinit, whose inittab
# runs OpenRC as Alpine's does and finally the lab's report, which powers the guest off.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
lab=/lab

echo "lab: preparing the OpenRC boot"
cp -a "$lab/overlay/." /
for service in "$lab"/openrc/*; do
    install -m 0755 "$service" "/etc/init.d/${service##*/}"
done
# Runlevel links made as the apkovl makes them (a symlink per service; rc-update is slow under emulation).
ln -s /etc/init.d/lab-localmount /etc/runlevels/boot/lab-localmount
while read -r service; do
    ln -s "/etc/init.d/$service" "/etc/runlevels/default/$service"
done < "$lab/default-runlevel"
# Debian's own services are not the live system's: its sysinit keeps what Alpine's devfs, mdev and
# hwdrivers do (kernel filesystems, udev loading drivers), the root is already mounted read-write.
for extra in smartmontools uuidd bootlogs rc.local rmnologin; do
    rm -f "/etc/runlevels/default/$extra"
done
for extra in checkroot.sh checkfs.sh checkroot-bootclean.sh mountall.sh mountall-bootclean.sh mountnfs.sh \
    mountnfs-bootclean.sh bootmisc.sh brightness cgroups hwclock.sh mount-configfs urandom; do
    rm -f "/etc/runlevels/sysinit/$extra"
done

# What Alpine's busybox provides and Debian's minbase does not.
for applet in udhcpc ip; do
    command -v "$applet" >/dev/null || ln -s /bin/busybox "/usr/sbin/$applet"
done
install -m 0755 "$lab/adduser.sh" /usr/sbin/adduser

audit_path=$(cat "$lab/audit-path")
mkdir -p "${audit_path%/*}"
install -m 0755 "$lab/audit" "$audit_path"
cp "$lab/audit-output" /etc/lab-audit-output

install -m 0755 "$lab/report.py" /sbin/lab-report
cat > /etc/inittab <<'INITTAB'
id:2:initdefault:
si::sysinit:/sbin/openrc sysinit
bt::bootwait:/sbin/openrc boot
l2:2:wait:/sbin/openrc default
lr:2:wait:/sbin/lab-report
INITTAB
sed -i 's/^#\{0,1\}rc_logger=.*/rc_logger="YES"/; s/^#\{0,1\}rc_parallel=.*/rc_parallel="NO"/' /etc/rc.conf
echo "lab: starting sysvinit"
exec /sbin/init
