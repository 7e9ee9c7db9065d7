"""deploy/daemonset.yaml's lstrace container as `podman run` arguments: the same image,
arguments, host mounts, capabilities, seccomp/AppArmor settings, user, read-only root and
hostPID, read from the YAML (the one place they are written).  A setting this does not know
how to carry over is an error, so the test never runs something laxer than the DaemonSet."""
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DAEMONSET = ROOT / "deploy" / "daemonset.yaml"
DEFAULT_GRACE_S = 30          # Kubernetes' default terminationGracePeriodSeconds


class Unsupported(Exception):
    pass


@dataclass
class Pod:
    image: str
    args: list
    port: int                 # the metrics containerPort
    grace_s: int
    run_opts: list            # podman run options
    security: dict            # the securityContext as written

    @property
    def capabilities(self):
        return list(self.security.get("capabilities", {}).get("add", []))


def read(path=DAEMONSET):
    """The DaemonSet document."""
    return next(d for d in yaml.safe_load_all(Path(path).read_text())
                if d and d["kind"] == "DaemonSet")


def load(path=DAEMONSET, ds=None, secrets=None):
    """The lstrace container of the DaemonSet (or of `ds`, an edited copy); `secrets` maps
    a Secret's name to the host directory that stands for it."""
    ds = ds or read(path)
    spec = ds["spec"]["template"]["spec"]
    (c,) = [c for c in spec["containers"] if c["name"] == "lstrace"]
    return Pod(image=c["image"], args=list(c.get("args", [])),
               port=next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics"),
               grace_s=spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_S),
               run_opts=_pod_opts(spec) + _security_opts(c.get("securityContext", {}))
               + _mount_opts(c.get("volumeMounts", []), spec.get("volumes", []), secrets or {}),
               security=c.get("securityContext", {}))


def _pod_opts(spec):
    opts = []
    if spec.get("hostPID"):
        opts.append("--pid=host")
    if spec.get("hostNetwork"):
        raise Unsupported("hostNetwork: the test publishes the metrics port instead")
    return opts


def _profile(kind, prof):
    if prof.get("type") == "Unconfined":
        return ["--security-opt", f"{kind}=unconfined"]
    if prof.get("type") in ("RuntimeDefault", None):
        return []
    raise Unsupported(f"{kind} profile {prof}")


def _security_opts(sc):
    opts = []
    for k, v in sc.items():
        if k == "privileged":
            opts += ["--privileged"] if v else []
        elif k == "runAsUser":
            opts += ["--user", str(v)]
        elif k == "capabilities":
            opts += [f"--cap-drop={','.join(v.get('drop', []))}"] if v.get("drop") else []
            opts += [f"--cap-add={','.join(v.get('add', []))}"] if v.get("add") else []
        elif k == "seccompProfile":
            opts += _profile("seccomp", v)
        elif k == "appArmorProfile":
            opts += _profile("apparmor", v)
        elif k == "readOnlyRootFilesystem":
            # Kubernetes mounts no tmpfs of its own: nothing but the volumes is writable
            opts += ["--read-only", "--read-only-tmpfs=false"] if v else []
        elif k == "allowPrivilegeEscalation":
            opts += [] if v else ["--security-opt", "no-new-privileges"]
        else:
            raise Unsupported(f"securityContext.{k}")
    return opts


def _mount_opts(mounts, volumes, secrets):
    vols = {v["name"]: v for v in volumes}
    opts = []
    for m in mounts:
        v = vols[m["name"]]
        ro = ",ro" if m.get("readOnly") else ""
        if "hostPath" in v:
            opts += ["--mount", f"type=bind,source={v['hostPath']['path']},"
                                f"target={m['mountPath']}{ro}"]
        elif "emptyDir" in v:         # empty: podman would copy the image's files up
            size = v["emptyDir"].get("sizeLimit")
            opts += ["--tmpfs", f"{m['mountPath']}:notmpcopyup"
                                + (f",size={size.rstrip('i')}" if size else "")]
        elif "secret" in v and v["secret"]["secretName"] in secrets:   # files, read-only
            opts += ["--mount", f"type=bind,source={secrets[v['secret']['secretName']]},"
                                f"target={m['mountPath']},ro"]
        else:
            raise Unsupported(f"volume {m['name']}: {sorted(v)}")
    return opts
