"""The lstrace image: its size and what fills it, how long it takes to build, and how long
`lstrace serve` takes to start in it (as deploy/daemonset.yaml runs it) and on the host.

  size      podman's image size, and du inside it: BCC's LLVM (libLLVM, libclang-cpp,
            libz3), the kernel headers (/usr/src), Python, the rest
  build     seconds: the Debian 13 base root (mmdebstrap, 0 when cached) and podman build
            into an empty storage (every layer, apt downloads included)
  startup   process start to the first /metrics answer that lists attached probes:
            `podman run` with the DaemonSet's settings vs `lstrace serve` on the host
Everything podman makes is deleted at the end (tests/podman.py).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

from common import ROOT, summarize  # noqa: E402  (puts the checkout on sys.path)

sys.path.insert(0, os.path.join(ROOT, "tests"))
import daemonset  # noqa: E402
import imagebase  # noqa: E402
from podman import NETWORK, Podman  # noqa: E402

BASE_TAG = "localhost/lstrace-base:trixie"
PARTS = {"llvm": "/usr/lib/*/libLLVM* /usr/lib/*/libclang-cpp* /usr/lib/*/libz3*",
         "headers": "/usr/src",
         "python": "/usr/lib/python3* /usr/bin/python3* /usr/lib/*/libpython3*",
         "total": "/bin /etc /lib /opt /sbin /usr /var"}


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_scrape(url, proc_alive, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if b"lstrace_probe_attached" in r.read():
                    return
        except OSError:
            pass
        if not proc_alive():
            raise RuntimeError(f"{url}: the server exited")
        time.sleep(0.05)
    raise RuntimeError(f"{url}: no answer in {timeout} s")


def container_startup(pm, pod):
    port = free_port()
    t0 = time.monotonic()
    pm.run(pod.image, *pod.args, opts=[*pod.run_opts, "--name", "lstrace-bench", "--network",
                                       NETWORK, "-p", f"127.0.0.1:{port}:{pod.port}"],
           detach=True)
    try:
        first_scrape(f"http://127.0.0.1:{port}/metrics", lambda: True)
        return time.monotonic() - t0
    finally:
        pm("rm", "-f", "-t", "10", "lstrace-bench", check=False)


def host_startup():
    port = free_port()
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "lstrace", "serve", "--listen",
                          f"127.0.0.1:{port}"], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        first_scrape(f"http://127.0.0.1:{port}/metrics", lambda: p.poll() is None)
        return time.monotonic() - t0
    finally:
        p.terminate()
        p.wait(30)


def sizes(pm, image):
    script = "; ".join(f"echo {k} $(du -scb {v} 2>/dev/null | tail -1 | cut -f1)"
                       for k, v in PARTS.items())
    r = pm.run(image, "-c", script, opts=["--entrypoint", "sh", "--network", "none"])
    got = dict(line.split() for line in r.stdout.split("\n") if line.strip())
    return {k: int(v) for k, v in got.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    pod = daemonset.load()
    tarball, base_s = imagebase.tarball()
    pm = Podman()
    try:
        pm.import_root(tarball, BASE_TAG, imagebase.PATH_ENV)
        build_s = pm.build(ROOT, pod.image, [f"BASE={BASE_TAG}"])
        res = {"image": pod.image, "size_bytes": pm.size(pod.image), "du": sizes(pm, pod.image),
               "base_root_seconds": round(base_s, 1), "build_seconds": round(build_s, 1)}
        cont, host = [], []
        for _ in range(a.reps):          # interleaved: load changes hit both alike
            cont.append(container_startup(pm, pod))
            host.append(host_startup())
        res["startup_container"], res["startup_host"] = summarize(cont), summarize(host)
    finally:
        pm.close()
    print("BENCH_JSON " + json.dumps(res))


if __name__ == "__main__":
    main()
