#!/bin/sh
# PID 1 of a lab guest (see tests/lab/run). The root file system is the host's, or with --root
# debian13 a built one (this file is copied into it), read-only over virtiofs. Makes a scratch system around it, runs the command the runner left in the lab share,
# writes its exit code there and powers off. Kernel messages go to the console (ttyS0; arm64:
# ttyAMA0), the console log on the host; the command's output to $LAB_TTY (ttyS1; arm64: the
# virtio console hvc0), the runner's stdout.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
LAB=/run/lab
# Static busybox applets start several times faster than dynamically linked tools under TCG
# (and Debian 13's mount is not in util-linux). No /dev/null yet: a root built in a user
# namespace (--arch arm64) has an empty /dev until devtmpfs is mounted.
if [ -n "$(command -v busybox)" ]; then
	applets=$(busybox --list)
	for t in mount mountpoint mkdir ln hostname stty mv; do
		case " $(echo $applets) " in *" $t "*) eval "$t() { busybox $t \"\$@\"; }" ;; esac
	done
fi

mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/console 2>&1
# busybox's reboot(2) returns only when the machine is off; sysrq (asynchronous) is the fallback.
# Nothing may be exec'd after that: the virtiofs root goes away during power-off.
off() {
	sync
	busybox poweroff -f 2>/dev/null
	echo o >/proc/sysrq-trigger
	while :; do :; done
}
die() { echo "lab-init: error: $*"; off; }

mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=755 tmpfs /run
mkdir $LAB && mount -t virtiofs lab $LAB || die "cannot mount the lab share"
# LAB_CWD, LAB_KEEP, LAB_HOST, LAB_MODDIR, LAB_BUILD, LAB_SOURCE, LAB_TTY and the command's
# environment
. $LAB/env || die "cannot read $LAB/env"
# Not the host's root: the host's / is a third share, the $LAB_KEEP paths are bound from it.
if [ -n "$LAB_HOST" ]; then
	mkdir -p "$LAB_HOST" && mount -t virtiofs -o ro host "$LAB_HOST" || die "cannot mount the host share"
fi

# A fresh tmpfs over $1; host directories in $LAB_KEEP below it (the working directory, the kernel
# tree) are bound back at the same path so a checkout or cache under /tmp stays visible.
scratch() {
	kept=
	n=0
	for p in $LAB_KEEP; do
		case "$p/" in "$1"/*)
			n=$((n + 1))
			mkdir -p /run/keep/$n && mount --bind "$LAB_HOST$p" /run/keep/$n && kept="$kept $n:$p" ;;
		esac
	done
	mount -t tmpfs -o mode=1777 tmpfs "$1" || die "tmpfs on $1"
	for k in $kept; do
		mkdir -p "${k#*:}" && mount --move /run/keep/${k%%:*} "${k#*:}"
	done
}
for d in /tmp /var/tmp /dev/shm; do scratch $d; done
if [ -n "$LAB_HOST" ]; then
	# onto empty directories the runner made in the root (read-only here)
	for p in $LAB_KEEP; do
		mountpoint -q "$p" || mount --bind "$LAB_HOST$p" "$p" || die "cannot bind $p from the host"
	done
fi

mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t cgroup2 cgroup2 /sys/fs/cgroup

# The guest kernel's modules and headers where modprobe and BCC look for them.
R=$(uname -r)
mount -t tmpfs -o mode=755 tmpfs /usr/lib/modules
mkdir /usr/lib/modules/$R
for f in "$LAB_MODDIR"/*; do
	case "${f##*/}" in build | source) ;; *) ln -s "$f" /usr/lib/modules/$R/ ;; esac
done
ln -s "$LAB_BUILD" /usr/lib/modules/$R/build
ln -s "$LAB_SOURCE" /usr/lib/modules/$R/source

hostname lab
# loopback only (no network device): for tests that serve and scrape on 127.0.0.1
if command -v busybox >/dev/null; then busybox ip link set lo up; else ip link set lo up; fi
ulimit -l unlimited
# (a virtio console has no line speed)
stty -F "$LAB_TTY" 115200 raw -echo 2>/dev/null || stty -F "$LAB_TTY" raw -echo ||
	die "no $LAB_TTY for the command's output"
cd "$LAB_CWD" || die "cannot cd to $LAB_CWD"

read -r up _ </proc/uptime
echo "lab-init: running the command (guest uptime $up s)"
: >$LAB/started
# A subshell, so the last close of ttyS1 (at its exit) waits for the UART to drain.
(. $LAB/cmd) </dev/null >"$LAB_TTY" 2>&1
echo $? >$LAB/exit.part && mv $LAB/exit.part $LAB/exit
read -r up _ </proc/uptime
echo "lab-init: the command finished (guest uptime $up s)"
off
