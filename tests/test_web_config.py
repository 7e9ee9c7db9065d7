"""`lstrace serve --web.config.file` (issue 21): the exporter-toolkit web config
against real clients.  The real Prometheus scrapes a real `lstrace serve` over
TLS with basic auth, then (the file rewritten: reloaded on the next
connection) over mTLS; the real curl gets 401 without or with wrong
credentials, fails the handshake without a client certificate under
RequireAndVerifyClientCert, fails cleanly with plain HTTP to the TLS port,
and lstrace keeps serving after each.  Bad config files each get one line
naming the file and the key, exit 2, nothing loaded."""
import json
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from support import ROOT, free_port, left_over, lstrace_prog_ids, run_lstrace, wait_for
from webtls import (CLIENT_DNS, CLIENT_URI, PASSWORD, USER, Served,  # noqa: F401 (pki)
                    bcrypt_hash, curl, in_process, pki, tls_config)

PROMETHEUS = "prometheus"


# ---- bad config files: (id, file text, key named in the one-line error)
def _bad_configs():
    good_tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    return [
        ("unknown-key", good_tls + "  frobnicate: yes\n", "tls_server_config.frobnicate: "
         "unknown key"),
        ("unknown-top-key", "scrape_interval: 5s\n", "scrape_interval: unknown key"),
        ("unreadable-cert", good_tls.replace("server.crt", "absent.crt"),
         "tls_server_config.cert_file: cannot read"),
        ("key-not-matching-cert", good_tls.replace("server.key", "client.key"),
         "tls_server_config.key_file: "),
        ("cert-not-pem", good_tls.replace("server.crt", "server.ext"),
         "tls_server_config.cert_file: "),
        ("plain-text-password", f"basic_auth_users:\n  {USER}: {PASSWORD}\n",
         f"basic_auth_users.{USER}: not a bcrypt hash"),
        ("bad-yaml", "tls_server_config:\n  cert_file: [server.crt\n", "not valid YAML at line"),
        ("not-a-mapping", "- cert_file\n", "top level: expected a mapping"),
        ("bad-client-auth", good_tls + "  client_auth_type: Sometimes\n",
         "tls_server_config.client_auth_type: invalid 'Sometimes'"),
        ("ca-without-client-auth", good_tls + "  client_ca_file: ca.crt\n",
         "tls_server_config.client_ca_file: client CAs configured without"),
        ("bad-tls-version", good_tls + "  min_version: TLS14\n",
         "tls_server_config.min_version: unknown TLS version 'TLS14'"),
        ("min-above-max", good_tls + "  min_version: TLS13\n  max_version: TLS12\n",
         "tls_server_config.min_version: is above max_version"),
        ("missing-key-file", "tls_server_config:\n  cert_file: server.crt\n",
         "tls_server_config.key_file: missing"),
        ("header-not-allowed", "http_server_config:\n  headers:\n    Server: me\n",
         "http_server_config.headers.Server: this header can not be configured"),
        ("header-bad-value", "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
         "http_server_config.headers.X-Frame-Options: invalid value 'allow'"),
        ("not-a-bool", "http_server_config:\n  http2: maybe\n",
         "http_server_config.http2: expected true or false, got 'maybe'"),
        ("sans-without-required-cert", good_tls + "  client_auth_type: VerifyClientCertIfGiven"
         "\n  client_ca_file: ca.crt\n  client_allowed_sans: [scraper.lstrace.test]\n",
         "tls_server_config.client_allowed_sans: requires client_auth_type to be one of"),
        ("toolkit-key-not-implemented", good_tls + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
         "tls_server_config.cipher_suites: an exporter-toolkit key lstrace does not implement"),
    ]


BAD = _bad_configs()


@pytest.mark.parametrize("text, message", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_is_one_line_exit_2(pki, text, message):
    """--check-config and a real start both refuse it: one line naming the
    file and the key, exit 2, no traceback, nothing loaded into the kernel."""
    path = pki / "bad.yml"
    path.write_text(text)
    before = lstrace_prog_ids()
    for extra in (["--check-config"], ["--listen", f"127.0.0.1:{free_port()}"]):
        r = run_lstrace("serve", "--web.config.file", str(path), *extra, timeout=60)
        print(f"{extra[0]}: {r.stderr.strip()}")
        assert "Traceback" not in r.stderr, r.stderr
        assert (r.returncode, r.stdout) == (2, ""), r.stderr
        assert r.stderr.startswith(f"lstrace: bad --web.config.file {path}: ") \
            and r.stderr.count("\n") == 1, r.stderr
        assert message in r.stderr, r.stderr
    assert not left_over(before), "a bad web config left lstrace programs loaded"


def test_missing_config_file_and_check_config_without_file(pki):
    r = run_lstrace("serve", "--web.config.file", str(pki / "absent.yml"), "--check-config")
    assert r.returncode == 2 and "cannot read it: No such file" in r.stderr, r.stderr
    r = run_lstrace("serve", "--check-config")
    assert r.returncode == 2 and "name the file" in r.stderr, r.stderr


@pytest.mark.parametrize("argv, message", [
    (["--listen", ":9477", "--web.listen-address", ":9100"], "disagree: give one of them"),
    (["--web.telemetry-path", "metrics"], "bad --web.telemetry-path 'metrics'"),
    (["--web.max-requests", "-1"], "bad --web.max-requests -1"),
], ids=["listen-flags-disagree", "telemetry-path-relative", "max-requests-negative"])
def test_bad_web_flags(argv, message):
    r = run_lstrace("serve", *argv)
    assert (r.returncode, r.stdout) == (2, "") and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("lstrace: ") and message in r.stderr, r.stderr


def test_reload_refuses_a_file_gone_bad_until_fixed(pki):
    """Reloaded when it changes; a bad version refuses connections (logged
    once), the fixed one serves again; HTTP <-> HTTPS needs a restart."""
    from lstrace import webconfig
    from lstrace.webserve import Reloader
    path, log = pki / "reload.yml", []
    path.write_text(tls_config())
    r = Reloader(webconfig.load(str(path)), log.append)
    assert r.get().users and r.get().context is not None
    path.write_text(tls_config().replace(bcrypt_hash(), PASSWORD))
    assert r.get() is None and r.get() is None
    assert len(log) == 1 and "not a bcrypt hash" in log[0], log
    path.write_text(tls_config(users=False) + "# fixed\n")
    assert r.get() is not None and not r.get().users
    r.force()                                   # SIGHUP: re-read though unchanged
    assert r.get() is not None and "reloaded" in log[-1], log
    path.write_text("basic_auth_users: {}\n")
    assert r.get() is None and "restart lstrace serve" in log[-1], log


@pytest.mark.parametrize("client_auth", [None, "NoClientCert", "RequestClientCert",
                                         "RequireAnyClientCert", "VerifyClientCertIfGiven",
                                         "RequireAndVerifyClientCert"])
def test_check_config_accepts_every_client_auth_type(pki, client_auth):
    path = pki / f"good-{client_auth}.yml"
    text = tls_config(client_auth)
    if client_auth in ("NoClientCert", "RequestClientCert", "RequireAnyClientCert"):
        text = text.replace("  client_ca_file: ca.crt\n", "")
    path.write_text(text)
    r = run_lstrace("serve", "--web.config.file", str(path), "--check-config")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    assert "valid (TLS" in r.stderr and "basic auth for 1 user" in r.stderr, r.stderr


# ---- real clients against a real `lstrace serve`
def _prometheus(tmp, pki, port):
    """The real Prometheus: job lstrace (CA, client cert, right password),
    wrong-password and no-client-cert (each should fail in its phase)."""
    tls = f"ca_file: {pki / 'ca.crt'}"
    cert = f", cert_file: {pki / 'client.crt'}, key_file: {pki / 'client.key'}"
    jobs = [("lstrace", tls + cert, PASSWORD), ("wrong-password", tls + cert, "nope"),
            ("no-client-cert", tls, PASSWORD)]
    cfg = tmp / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" + "".join(
        f"  - job_name: {job}\n    scheme: https\n    tls_config: {{{t}}}\n"
        f"    basic_auth: {{username: {USER}, password: '{pw}'}}\n"
        f"    static_configs: [{{targets: ['localhost:{port}']}}]\n" for job, t, pw in jobs))
    pport = free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{pport}", "--log.level=warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{pport}"


def _targets(base):
    with urllib.request.urlopen(base + "/api/v1/targets", timeout=5) as r:
        return {t["labels"]["job"]: t for t in json.load(r)["data"]["activeTargets"]}


def _scraped_since(base, t0, want):
    """{job: (health, lastError)} once every job was scraped after t0 with the
    health in `want`."""
    def done():
        got = _targets(base)
        after = {j: t for j, t in got.items()
                 if t["lastScrape"] and _epoch(t["lastScrape"]) > t0}
        if all(j in after and after[j]["health"] == h for j, h in want.items()):
            return {j: (t["health"], t["lastError"]) for j, t in after.items()}
        return None
    return wait_for(done, 30, f"scrapes after the change: {want}")


def _epoch(rfc3339):
    """Prometheus' '2026-12-04T14:20:01.123456789Z' (or +hh:mm) in seconds."""
    from datetime import datetime
    m = re.fullmatch(r"([^.]+?)(\.\d+)?(Z|[+-]\d\d:\d\d)", rfc3339)
    zone = "+00:00" if m[3] == "Z" else m[3]
    return datetime.fromisoformat(m[1] + (m[2] or "")[:7] + zone).timestamp()


def _refused_with_401(d, pki):
    for args, what in (([], "no credentials"), (["-u", f"{USER}:wrong"], "wrong password"),
                       (["-u", f"nobody:{PASSWORD}"], "unknown user")):
        code, rc, body = curl(d.url, *args, pki=pki)
        assert code == 401, (what, code, rc, body)
        assert d.get()[0] == 200, f"not serving after {what}"


def _cert(pki, name):
    return "--cert", str(pki / f"{name}.crt"), "--key", str(pki / f"{name}.key")


@pytest.mark.root
def test_real_clients_tls_basic_auth_then_mtls(pki, tmp_path):
    web = pki / "web.yml"
    web.write_text(tls_config())
    d = Served("--web.config.file", str(web), scheme="https", pki=pki,
               auth=["-u", f"{USER}:{PASSWORD}"])
    prom = None
    try:
        # phase 1: TLS + basic auth
        code, _, body = d.get("-D", "-")
        assert code == 200 and "x-content-type-options: nosniff" in body.lower(), body[:300]
        _refused_with_401(d, pki)
        code, rc, body = curl(d.url.replace("https:", "http:"))
        print(f"plain HTTP to the TLS port: HTTP {code}, curl exit {rc}: {body.strip()!r}")
        assert code in (0, 400) and "HTTPS server" in body, body
        assert d.get()[0] == 200, "not serving after plain HTTP"
        prom, base = _prometheus(tmp_path, pki, d.port)
        got = _scraped_since(base, time.time(), {"lstrace": "up", "wrong-password": "down",
                                                 "no-client-cert": "up"})
        print(f"TLS + basic auth: {got}")
        assert "401" in got["wrong-password"][1]
        # phase 2: the file rewritten to mTLS; the next connections use it
        web.write_text(tls_config("RequireAndVerifyClientCert", users=False))
        t0 = time.time()
        code, rc, body = d.get()
        assert code == 0 and rc != 0, ("no client certificate, yet", code, rc, body)
        for key in ("client", "stranger"):
            code, rc, body = d.get(*_cert(pki, key))
            assert (code == 200) == (key == "client"), (key, code, rc, body)
        got = _scraped_since(base, t0, {"lstrace": "up", "wrong-password": "up",
                                        "no-client-cert": "down"})
        print(f"mTLS (RequireAndVerifyClientCert): {got}")
        d.proc.send_signal(signal.SIGHUP)          # as Prometheus: re-read, keep serving
        wait_for(lambda: d.get(*_cert(pki, "client"))[0] == 200, 10, "serving after SIGHUP")
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(10)
        rc, err = d.stop()
    print(err)
    assert rc == 0, err
    assert err.count("reloaded") == 2, err       # the rewrite, then SIGHUP


# ---- the DaemonSet's commented example works as written
def _uncomment(lines):
    import textwrap
    return textwrap.dedent("\n".join(ln[1:] for ln in lines)) + "\n"


def _example():
    """(Secret, container additions, pod additions) of deploy/daemonset.yaml's block."""
    import yaml
    text = (ROOT / "deploy" / "daemonset.yaml").read_text()
    block = text[text.index("# >>> Securing"):text.index("# <<<")].splitlines()
    start = block.index("# ---") + 1
    mid = next(i for i, ln in enumerate(block) if ln.startswith("# --- in the DaemonSet"))
    pod = next(i for i, ln in enumerate(block) if ln.startswith("# --- and in its pod"))
    end = next(i for i, ln in enumerate(block) if ln.startswith("# --- Prometheus"))
    container = [ln for ln in block[mid:pod] if not ln.startswith("# ---")]
    return (yaml.safe_load(_uncomment(block[start:mid])), yaml.safe_load(_uncomment(container)),
            yaml.safe_load(_uncomment(block[pod + 1:end])))


def test_daemonset_web_config_example_works(pki, tmp_path):
    import shutil
    import yaml
    secret, container, pod = _example()
    files = secret["stringData"]
    # the web config as the pod sees it: the Secret's keys as files in one directory
    (tmp_path / "web-config.yml").write_text(
        files["web-config.yml"].replace("<BCRYPT HASH>", f"'{bcrypt_hash()}'"))
    shutil.copy(pki / "server.crt", tmp_path / "tls.crt")
    shutil.copy(pki / "server.key", tmp_path / "tls.key")
    args = container["args"]
    path = args[args.index("--web.config.file") + 1]
    mount = container["volumeMounts"][0]
    assert path == f"{mount['mountPath']}/web-config.yml"
    assert pod["volumes"][0]["secret"]["secretName"] == secret["metadata"]["name"]
    r = run_lstrace("serve", "--web.config.file", str(tmp_path / "web-config.yml"),
                    "--check-config")
    assert r.returncode == 0 and "valid (TLS, basic auth for 1 user" in r.stderr, r.stderr
    kv = pytest.importorskip("kubernetes_validate",
                             reason="kubernetes-validate (test extra) not installed")
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "daemonset.yaml").read_text()) if d]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    spec = ds["spec"]["template"]["spec"]
    c = spec["containers"][0]
    c["args"], c["readinessProbe"] = args, container["readinessProbe"]
    c["volumeMounts"] = c.get("volumeMounts", []) + container["volumeMounts"]
    spec["volumes"] = spec.get("volumes", []) + pod["volumes"]
    for doc in (secret, ds):
        kv.validate(doc, kv.latest_version(), strict=True)


@pytest.mark.parametrize("client_auth, allowed, cert, ok", [
    ("RequireAndVerifyClientCert", CLIENT_DNS, "client", True),
    ("RequireAndVerifyClientCert", "other.lstrace.test", "client", False),
    ("RequireAnyClientCert", CLIENT_URI, "client", True),
    ("RequireAnyClientCert", CLIENT_URI, "stranger", False),
], ids=["dns-allowed", "dns-not-allowed", "uri-allowed-unverified", "no-san-refused"])
def test_client_allowed_sans(pki, client_auth, allowed, cert, ok):
    """The real curl against the HTTP layer (fixed metrics body): a client
    certificate must carry an allowed SAN, verified by a CA or not."""
    from lstrace import webconfig
    from lstrace.exposition import MetricsApp
    text = tls_config(client_auth, users=False, headers=False) + \
        f"  client_allowed_sans: ['{allowed}']\n"
    if client_auth == "RequireAnyClientCert":
        text = text.replace("  client_ca_file: ca.crt\n", "")
    (pki / "sans.yml").write_text(text)
    srv, base = in_process(MetricsApp(lambda: b"x_total 1.0\n"),
                           webconfig.load(str(pki / "sans.yml")))
    try:
        code, rc, body = curl(base.replace("http://127.0.0.1", "https://localhost") + "/metrics",
                              *_cert(pki, cert), pki=pki)
        assert (code == 200) == ok, (code, rc, body, dict(srv.counts))
        assert ok or srv.counts["client SAN not allowed"] == 1, srv.counts
    finally:
        srv.shutdown()
        srv.server_close()
