#!/bin/busybox sh
# /init of the lab initramfs (kernels with modular virtio, i.e. Debian 6.1): load the virtio-pci
# and virtiofs modules, mount the host root read-only and hand over to guest-init.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
fail() { echo "lab-initramfs: error: $*"; poweroff -f; sleep 10; }

for m in $(cat /modules/load); do
	insmod "/modules/$m" || fail "insmod $m failed"
done
# The virtiofs device may show up a moment after its driver loads.
i=0
until mount -t virtiofs -o ro hostroot /newroot 2>/dev/null; do
	i=$((i + 1))
	[ $i -ge 100 ] && fail "cannot mount the host root (virtiofs tag hostroot)"
	sleep 0.1
done
init=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^init=//p' | tail -n 1)
[ -x "/newroot$init" ] || fail "init '$init' is not executable in the host root"
umount /proc /dev
exec switch_root /newroot "$init"
