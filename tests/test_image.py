"""The lstrace image, run as deploy/daemonset.yaml runs it, on this host.

Builds the Containerfile from a local Debian 13 base (tests/imagebase.py: no registry is
reachable here), runs it with the DaemonSet's mounts, capabilities, seccomp/AppArmor
settings, read-only root and hostPID (tests/daemonset.py reads them from the YAML), lets the
real Prometheus scrape it over the (slirp4netns) network, checks the exposition with
promtool, the attached probes against the host's `lstrace doctor --json`, that SIGTERM
stops it within terminationGracePeriodSeconds, and that the host is left as found.  Then
each capability is taken away in turn: what breaks is README "Capabilities".
Everything podman makes lives in a storage of its own, deleted at the end (tests/podman.py).
"""
import base64
import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

import daemonset
import imagebase
from support import (ROOT, free_port, host_state, lstrace_cmd, lstrace_prog_ids, run_lstrace,
                      wait_for)
from podman import NETWORK, Podman
from test_serve_e2e import Prom, http_get
from test_web_config import _example as web_example
from webtls import PASSWORD, USER, bcrypt_hash, pki  # noqa: F401  (pki: a fixture)

pytestmark = pytest.mark.root

BASE_TAG = "localhost/lstrace-base:trixie"
# what breaks without each capability the DaemonSet adds, as `serve` says it on stderr
# (the README table says the same; the test keeps both true)
WITHOUT = {
    "BPF": "could not drop capabilities",         # loads under SYS_ADMIN, keeps every cap
    "PERFMON": "could not drop capabilities",
    "SYS_ADMIN": "BPF run-time statistics unavailable",
    "SYSLOG": "no CAP_SYSLOG",                    # kallsyms addresses hidden
}
# capabilities the DaemonSet used to add; granted on top, they change nothing
NOT_NEEDED = ("DAC_READ_SEARCH", "SETPCAP")


@pytest.fixture(scope="module")
def pod():
    return daemonset.load()


@pytest.fixture(scope="module")
def podman():
    if not (shutil.which("podman") and shutil.which("runc") and shutil.which("slirp4netns")
            and shutil.which("mmdebstrap")):
        pytest.fail("podman, runc, slirp4netns or mmdebstrap missing: scripts/install.sh --test")
    p = Podman()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def image(pod, podman):
    """The image under the DaemonSet's name, built from the cached (or a new) base root."""
    tarball, base_s = imagebase.tarball()
    podman.import_root(tarball, BASE_TAG, imagebase.PATH_ENV)
    build_s = podman.build(ROOT, pod.image, [f"BASE={BASE_TAG}"])
    size = podman.size(pod.image)
    print(f"\nimage {pod.image}: {size / 1e6:.0f} MB, built in {build_s:.0f} s "
          f"(base root {'cached' if not base_s else f'made in {base_s:.0f} s'})")
    return pod.image


def container_opts(pod, port, name):
    return [*pod.run_opts, "--name", name, "--network", NETWORK,
            "-p", f"127.0.0.1:{port}:{pod.port}"]


def attached(metrics_text):
    """{probe: mode} of the attached probes in an exposition."""
    return dict((p, m) for m, p in re.findall(
        r'^lstrace_probe_attached\{mode="([^"]+)",probe="([^"]+)"\} 1', metrics_text, re.M))


def fetch(url, web=None, timeout=5, auth=True):
    """GET url; with `web` (the pki directory) over TLS verified by its CA, with basic auth."""
    if web is None:
        return http_get(url, timeout)
    ctx = ssl.create_default_context(cafile=str(web / "ca.crt"))
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    req = urllib.request.Request(url.replace("http:", "https:"),
                                 headers={"Authorization": f"Basic {basic}"} if auth else {})
    with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
        return r.read().decode()


def secured(pki, tmp_path):
    """The DaemonSet with its commented web-config example applied (TLS + basic auth): the
    Secret's files in a directory that stands for it."""
    secret, container, pod_add = web_example()
    d = tmp_path / "secret"
    d.mkdir()
    files = secret["stringData"]
    (d / "web-config.yml").write_text(
        files["web-config.yml"].replace("<BCRYPT HASH>", f"'{bcrypt_hash()}'"))
    shutil.copy(pki / "server.crt", d / "tls.crt")
    shutil.copy(pki / "server.key", d / "tls.key")
    ds = daemonset.read()
    spec = ds["spec"]["template"]["spec"]
    c = next(c for c in spec["containers"] if c["name"] == "lstrace")
    c["args"] = container["args"]
    c["volumeMounts"] = c.get("volumeMounts", []) + container["volumeMounts"]
    spec["volumes"] = spec.get("volumes", []) + pod_add["volumes"]
    return daemonset.load(ds=ds, secrets={secret["metadata"]["name"]: d})


def scrape_config(port, web):
    job = f"  - job_name: lstrace\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    if web:
        job += (f"    scheme: https\n    tls_config: {{ca_file: '{web / 'ca.crt'}'}}\n"
                f"    basic_auth: {{username: {USER}, password: '{PASSWORD}'}}\n")
    return "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" + job


@pytest.mark.parametrize("endpoint", ["plain", "tls-basic-auth"])
def test_image_as_the_daemonset_runs_it(pod, podman, image, tmp_path, pki, endpoint):
    """`plain`: the DaemonSet as written; `tls-basic-auth`: with its commented web-config
    example (README "Securing the endpoint") applied, scraped over TLS with basic auth."""
    web = pki if endpoint != "plain" else None
    if web:
        pod = secured(pki, tmp_path)
    doctor = run_lstrace("doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    want = {p["name"]: p["mode"] for p in json.loads(doctor.stdout)["probes"]
            if p["mode"] != "unavailable"}
    before_state, before_progs = host_state(), lstrace_prog_ids()
    port, pport = free_port(), free_port()
    prom = None
    t0 = time.monotonic()
    podman.run(image, *pod.args, opts=container_opts(pod, port, "lstrace-ds"), detach=True)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        text = wait_for(lambda: (t := fetch(url, web)) and "lstrace_probe_attached" in t and t,
                        60, "the container's /metrics")
        print(f"\ncontainer start-up to first scrape: {time.monotonic() - t0:.1f} s")
        ours = lstrace_prog_ids() - before_progs
        assert ours, "the container loaded no program"
        assert attached(text) == want, (attached(text), want)
        check = subprocess.run(["promtool", "check", "metrics"], input=text,
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr

        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(scrape_config(port, web))
        prom = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: http_get(f"http://127.0.0.1:{pport}/-/ready"), 30, "prometheus ready")
        q = Prom(pport)
        wait_for(lambda: q.query('up{job="lstrace"} == 1'), 30, "Prometheus scraping it")
        got = wait_for(lambda: q.query("lstrace_probe_attached == 1"), 30, "attached probes")
        assert {r["metric"]["probe"]: r["metric"]["mode"] for r in got} == want
        if web:      # without credentials: 401, and it serves on
            with pytest.raises(urllib.error.HTTPError) as e:
                fetch(url, web, auth=False)
            assert e.value.code == 401
            assert "lstrace_probe_attached" in fetch(url, web)

        t1 = time.monotonic()
        podman("kill", "--signal", "TERM", "lstrace-ds")
        code = podman("wait", "lstrace-ds", timeout=pod.grace_s + 30).stdout.strip()
        stop_s = time.monotonic() - t1
        print(f"SIGTERM to exit: {stop_s:.1f} s (grace period {pod.grace_s} s)")
        assert code == "0" and stop_s < pod.grace_s, (code, stop_s)
        assert "detaching" in podman("logs", "lstrace-ds").stderr
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(10)
        podman("rm", "-f", "-t", "0", "lstrace-ds", check=False)
    gone = wait_for(lambda: not (lstrace_prog_ids() & ours), 15, "programs unloaded") \
        if ours else True
    assert gone
    links = json.loads(subprocess.run(["bpftool", "-j", "link", "list"], capture_output=True,
                                      text=True).stdout or "[]")
    assert not [ln for ln in links if ln.get("prog_id") in ours]
    assert host_state() == before_state


def serve_once(podman, pod, image, caps):
    """`serve --once` in the container with the DaemonSet's settings but these caps."""
    opts = [o for o in pod.run_opts if not o.startswith("--cap-add")]
    r = podman.run(image, "serve", "--once", opts=[*opts, f"--cap-add={','.join(caps)}",
                                                   "--network", "none"], timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_fewest_capabilities(pod, podman, image):
    """Each capability the DaemonSet adds is needed (taking it away breaks what WITHOUT
    says), and those it no longer adds change nothing when granted."""
    caps = pod.capabilities
    assert sorted(caps) == sorted(WITHOUT), "README's table and WITHOUT cover these caps"
    base = serve_once(podman, pod, image, caps)
    assert base.returncode == 0 and attached(base.stdout), base.stderr
    for cap in caps:
        r = serve_once(podman, pod, image, [c for c in caps if c != cap])
        assert WITHOUT[cap] in r.stderr and WITHOUT[cap] not in base.stderr, (cap, r.stderr)
    for cap in NOT_NEEDED:
        r = serve_once(podman, pod, image, [*caps, cap])
        assert r.returncode == 0 and attached(r.stdout) == attached(base.stdout), cap
        assert r.stderr == base.stderr, (cap, r.stderr)


def test_unit_bounds_the_same_capabilities(pod):
    """deploy/lstrace.service's bounding set is the DaemonSet's set (measured above)."""
    unit = (ROOT / "deploy" / "lstrace.service").read_text()
    bound = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    assert sorted(bound) == sorted(f"CAP_{c}" for c in pod.capabilities)


def test_unit_capabilities_on_the_host(pod):
    """The unit's bounding set on the host (setpriv): the same probes as full root."""
    unit = (ROOT / "deploy" / "lstrace.service").read_text()
    bound = re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split()
    full = run_lstrace("serve", "--once")
    caps = ",".join("+" + c[4:].lower() for c in bound)
    r = subprocess.run(["setpriv", f"--bounding-set=-all,{caps}", *lstrace_cmd("serve", "--once")],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and attached(r.stdout) == attached(full.stdout) != {}, r.stderr
    assert "could not drop" not in r.stderr and "statistics unavailable" not in r.stderr


def test_doctor_in_the_image_explains_a_missing_mount(pod, podman, image):
    """The DaemonSet without its BTF mount, on a runtime that hides /sys/kernel/btf (an empty
    tmpfs there: a container's own sysfs would show it), gets one line from doctor, exit 69."""
    opts, it = [], iter(pod.run_opts)
    for o in it:
        value = next(it) if o == "--mount" else None
        if value is None or "target=/sys/kernel/btf," not in value:
            opts += [o] if value is None else [o, value]
    assert len(opts) == len(pod.run_opts) - 2, "the DaemonSet mounts /sys/kernel/btf once"
    r = podman.run(image, "doctor", opts=[*opts, "--network", "none",
                                          "--tmpfs", "/sys/kernel/btf:notmpcopyup"], timeout=120)
    assert r.returncode == 69 and r.stderr.count("\n") == 1, r.stderr
    assert "mount the host's /sys/kernel/btf" in r.stderr
