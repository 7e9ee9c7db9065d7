#!/usr/bin/env bash
# Install lstrace and everything it needs on a Debian/Ubuntu host (run as root).
#   scripts/install.sh          runtime: BCC, bpftool, kernel headers, a venv in .venv
#   scripts/install.sh --test   also what the test suite needs (qemu lab, prometheus,
#                               tmux, clang/libbpf for the reproducer workloads)
#   scripts/install.sh --system also the command /usr/local/bin/lstrace (a link into
#                               .venv) and the systemd unit deploy/lstrace.service
# Kernel headers: the exact linux-headers-$(uname -r) when the distribution has it,
# otherwise the distribution's default headers; lstrace points BCC at the nearest
# ones for its own compile (lstrace doctor shows which), nothing is linked.
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=0 want_system=0
for arg in "$@"; do
    case "$arg" in
        --test) want_tests=1 ;;
        --system) want_system=1 ;;
        *) echo "install.sh: unknown option $arg (use --test and/or --system)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (sudo $0 $*)" >&2
    exit 77
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
apt-get update -q >/dev/null
pkgs=(python3 python3-venv python3-pip python3-bpfcc bpftool)
pkgs+=(python3-yaml python3-bcrypt)         # serve --web.config.file: YAML, bcrypt basic auth
arch=$(dpkg --print-architecture)
if apt-cache show "linux-headers-$(uname -r)" >/dev/null 2>&1; then
    pkgs+=("linux-headers-$(uname -r)")
else
    echo "install.sh: no linux-headers-$(uname -r) in the archive; installing linux-headers-$arch" \
         "(lstrace uses the nearest headers: its programs take struct offsets from BTF)" >&2
    pkgs+=("linux-headers-$arch")
fi
if [ $want_tests = 1 ]; then
    # tests/test_install.py checks that every program the code, tests, benchmarks and
    # scripts run comes from one of these (or their dependencies, or Debian's required set).
    pkgs+=(qemu-system-x86 busybox-static zstd cpio kmod mmdebstrap  # lab (depmod; debian13 root)
           prometheus tmux systemd procps iproute2         # e2e, top, unit checks, benchmarks
           clang llvm libbpf-dev gcc bpfcc-tools            # repro/benchmark BPF, funccount
           bpftrace                                         # the lock path shared with bpftrace (lab)
           openssl curl                                     # web config tests: certificates, clients
           podman runc slirp4netns)                         # the image (tests/test_image.py)
    pkgs+=(qemu-system-arm arch-test)    # arm64 lab guest and its root (qemu-user: tests/lab/binfmt.py)
fi
apt_install "${pkgs[@]}"
# Debian's prometheus package may start a server on :9090; the tests run their own.
if [ $want_tests = 1 ] && command -v systemctl >/dev/null && systemctl is-active -q prometheus 2>/dev/null; then
    systemctl stop prometheus || true
fi
# BCC is a Debian package: the venv must see the system site-packages.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
extra=""
[ $want_tests = 1 ] && extra="[test]"
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra}"
.venv/bin/python -c 'import bcc' || { echo "install.sh: python3-bpfcc is not importable" >&2; exit 69; }
echo "install.sh: lstrace installed in $(pwd)/.venv (run: sudo .venv/bin/lstrace doctor)"
if [ $want_system = 1 ]; then
    # the path deploy/lstrace.service runs (tests/test_deploy.py checks they agree)
    ln -sfn "$(pwd)/.venv/bin/lstrace" /usr/local/bin/lstrace
    install -m 0644 deploy/lstrace.service /etc/systemd/system/lstrace.service
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    echo "install.sh: /usr/local/bin/lstrace and /etc/systemd/system/lstrace.service installed" \
         "(start: systemctl enable --now lstrace)"
fi
