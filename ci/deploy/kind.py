"""`nox -s kind`: the rendered cpu manifests on a real cluster, kind, with one prediction through the Service.

Runs in GitHub Actions (the `kind` job); no cluster can run on this project's machines (kind pulls
its node image, and no container registry is reachable there). In order:

1. kind versions.KIND_VERSION (`go install`, checked by Go's checksum database, into .cache/kind/),
   a cluster on versions.KIND_NODE_IMAGE (Kubernetes versions.KUBERNETES_VERSION, by digest), and a
   registry beside it (versions.REGISTRY_IMAGE by digest) on 127.0.0.1:5001, which the nodes reach
   as localhost:5001 through containerd's registry host configuration (kind's local-registry recipe).
2. The built cpu image pushed there by the project's own push (ci/publish/push.py, REGISTRY=localhost:5001,
   record in build/kind/): the digest the cluster pulls is the one the registry computed, the same
   kind of digest a real registry gives. Why not `kind load`: it imports the image into containerd
   under its tags only, with a manifest the engine rewrote, so no registry digest resolves there,
   and a manifest that names the image by digest (the only way deploy/ allows) could not start.
3. `nox -s deploy`'s rendering with that digest (ci/deploy/render.py: validated, policies checked),
   then the same layer rendered by the real kustomize (in the node's kubectl) and compared object
   by object with ci/deploy/kustomize.py's rendering: any difference fails.
4. `kubectl apply` (strict server-side field validation), the rollout awaited, then through the
   Service's cluster IP from the node (kube-proxy picks a ready pod): /readyz, the model's metadata
   (/v2/models/<name>), one POST /predict and one POST /v2/models/<name>/infer, which must agree.
5. On failure, the pods' state, events and logs; the cluster and registry are deleted at the end
   unless --keep.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ci.deploy import kustomize, render
from ci.deploy.versions import KIND_MODULE, KIND_NODE_IMAGE, KIND_VERSION, REGISTRY_IMAGE
from ci.project import BUILD_DIR, CACHE_DIR, ROOT, UserError, main_guard, say, section, step

CLUSTER = "ml-model-image"
NODE = f"{CLUSTER}-control-plane"
REGISTRY_CONTAINER = "ml-model-image-registry"
REGISTRY_PORT = 5001  # on the runner's 127.0.0.1; the nodes reach the same name through containerd
REGISTRY_HOST = f"localhost:{REGISTRY_PORT}"
NAMESPACE = "ml-model-image"
WORK_DIR = BUILD_DIR / "kind"  # the push record, the rendering, the kubeconfig
VARIANT = "cpu"  # no GPU on GitHub's runners
READY_TIMEOUT_S = 240.0
KUBECTL = ("kubectl", "--kubeconfig=/etc/kubernetes/admin.conf")


def hosts_toml(registry_container: str = REGISTRY_CONTAINER) -> str:
    """containerd's registry host configuration: localhost:5001 in a node is the registry container."""
    return f'[host."http://{registry_container}:5000"]\n'


def kind_version_matches(output: str, version: str = KIND_VERSION) -> bool:
    """Whether `kind version` printed the pinned version (`kind v0.32.0 go1.26.3 linux/amd64`)."""
    words = output.split()
    return len(words) >= 2 and words[0] == "kind" and words[1] == version


def kind_binary(cache: Path = CACHE_DIR / "kind", environ: Mapping[str, str] = os.environ) -> str:
    """The pinned kind: from the cache, else `go install`ed there (verified by Go's checksum database)."""
    directory = cache / KIND_VERSION
    binary = directory / "kind"
    if binary.is_file():
        return str(binary)
    go = shutil.which("go", path=environ.get("PATH"))
    if not go:
        raise UserError(
            f"kind {KIND_VERSION} is installed with Go and `go` is not on PATH: install Go "
            "(GitHub Actions: actions/setup-go) and run this again."
        )
    with step(f"go install {KIND_MODULE}@{KIND_VERSION}"):
        env = {**environ, "GOBIN": str(directory.resolve()), "CGO_ENABLED": "0"}
        _run([go, "install", f"{KIND_MODULE}@{KIND_VERSION}"], env=env)
    out = _run([str(binary), "version"], capture=True)
    if not kind_version_matches(out):
        raise UserError(f"{binary} says {out.strip()!r}, not kind {KIND_VERSION}: delete {directory} and run again.")
    return str(binary)


def _run(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, capture: bool = False, stdin: bytes | None = None
) -> str:
    """Run a command; its output when captured; a failure is a UserError with its last words."""
    try:
        proc = subprocess.run(
            list(cmd), env=dict(env) if env else None, input=stdin, capture_output=capture or stdin is not None
        )
    except FileNotFoundError as exc:
        raise UserError(f"`{cmd[0]}` is not installed: {exc.strerror}.") from exc
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout or b"").decode(errors="replace").strip().splitlines()
        last = text[-1] if text else f"exit code {proc.returncode}"
        raise UserError(f"`{' '.join(cmd[:4])} ...` failed ({last.rstrip('.')}): read its output above.")
    return (proc.stdout or b"").decode(errors="replace")


class Cluster:
    """The kind cluster, its registry, and kubectl and curl run inside its node."""

    def __init__(self, docker: str, kind: str) -> None:
        self.docker, self.kind = docker, kind
        self.env = {**os.environ, "KUBECONFIG": str(WORK_DIR / "kubeconfig")}

    def kubectl(self, *args: str, stdin: bytes | None = None) -> str:
        return _run([self.docker, "exec", "-i", NODE, *KUBECTL, *args], stdin=stdin, capture=True)

    def curl(self, url: str, body: dict | None = None) -> dict:
        """One HTTP request from the node (through the Service's cluster IP); the answer as JSON."""
        cmd = [
            self.docker,
            "exec",
            "-i",
            NODE,
            "curl",
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--max-time",
            "10",
        ]
        if body is not None:
            cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
        out = _run([*cmd, url], stdin=json.dumps(body).encode() if body is not None else None, capture=True)
        try:
            return json.loads(out)
        except ValueError as exc:
            raise UserError(f"{url} answered {out[:200]!r}, not JSON: read the pod logs above.") from exc

    def up(self) -> None:
        """Start the registry and the cluster, and connect them (kind's local-registry recipe)."""
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        running = subprocess.run(
            [self.docker, "inspect", "-f", "{{.State.Running}}", REGISTRY_CONTAINER], capture_output=True, text=True
        )
        if running.stdout.strip() != "true":
            if running.returncode == 0:  # left stopped by an earlier run: start afresh
                subprocess.run([self.docker, "rm", "--force", REGISTRY_CONTAINER], capture_output=True)
            with step(f"registry {REGISTRY_IMAGE} on 127.0.0.1:{REGISTRY_PORT}"):
                publish = f"127.0.0.1:{REGISTRY_PORT}:5000"
                _run(
                    [self.docker, "run", "-d", "-p", publish, "--name", REGISTRY_CONTAINER, REGISTRY_IMAGE],
                    capture=True,
                )
        wait_for_registry(f"http://127.0.0.1:{REGISTRY_PORT}")
        clusters = _run([self.kind, "get", "clusters"], env=self.env, capture=True).split()
        if CLUSTER not in clusters:
            with step(f"kind create cluster ({KIND_NODE_IMAGE.split('@')[0]})"):
                create = ["create", "cluster", "--name", CLUSTER, "--image", KIND_NODE_IMAGE, "--wait", "180s"]
                _run([self.kind, *create], env=self.env)
        for node in _run([self.kind, "get", "nodes", "--name", CLUSTER], env=self.env, capture=True).split():
            directory = f"/etc/containerd/certs.d/{REGISTRY_HOST}"
            _run([self.docker, "exec", node, "mkdir", "-p", directory])
            _run(
                [self.docker, "exec", "-i", node, "cp", "/dev/stdin", f"{directory}/hosts.toml"],
                stdin=hosts_toml().encode(),
            )
        networks = _run(
            [self.docker, "inspect", "-f", "{{json .NetworkSettings.Networks}}", REGISTRY_CONTAINER], capture=True
        )
        if "kind" not in json.loads(networks or "{}"):
            _run([self.docker, "network", "connect", "kind", REGISTRY_CONTAINER])

    def down(self) -> None:
        """Delete the cluster and the registry (whatever is left of them)."""
        subprocess.run([self.kind, "delete", "cluster", "--name", CLUSTER], env=self.env, capture_output=True)
        subprocess.run([self.docker, "rm", "--force", REGISTRY_CONTAINER], capture_output=True)

    def copy_in(self, paths: Sequence[Path], destination: str) -> None:
        """Copy files and directories of the checkout into the node, keeping their paths."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in paths:
                tar.add(path, arcname=path.relative_to(ROOT).as_posix())
        _run([self.docker, "exec", NODE, "mkdir", "-p", destination])
        _run([self.docker, "cp", "-", f"{NODE}:{destination}"], stdin=buffer.getvalue())

    def diagnostics(self) -> str:
        """What the namespace holds, its events, and the model server's logs (best effort)."""
        parts = []
        for args in (
            ("get", "all,hpa,pdb,endpointslices", "-o", "wide"),
            ("get", "events", "--sort-by=.lastTimestamp"),
            ("describe", "pods"),
            ("logs", "deployment/model-server", "--all-containers", "--tail=200"),
        ):
            try:
                parts.append(f"$ kubectl -n {NAMESPACE} {' '.join(args)}\n" + self.kubectl("-n", NAMESPACE, *args))
            except UserError as exc:
                parts.append(f"$ kubectl -n {NAMESPACE} {' '.join(args)}\n{exc}")
        return "\n".join(parts)


def wait_for_registry(url: str, timeout_s: float = 30) -> None:
    """Wait until the registry container answers /v2/ (it starts in about a second)."""
    from ci.publish.registry import ping

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if ping(url, timeout=2) == 200:
                return
        except UserError:
            pass
        if time.monotonic() > deadline:
            raise UserError(
                f"the registry at {url} did not answer in {timeout_s:.0f} s: read `docker logs {REGISTRY_CONTAINER}`."
            )
        time.sleep(0.5)


def push_image() -> str:
    """Push the built cpu image to the cluster's registry with the project's push; its repository@digest."""
    from ci.publish.push import push_all

    print(
        push_all(
            [VARIANT],
            explicit=True,
            out_dir=WORK_DIR,
            environ={"REGISTRY": REGISTRY_HOST},
            # A throwaway registry inside this job: nothing is published, so neither the scan's verdict
            # (the push job checks it) nor a commit is needed.
            skip_scan_gate=True,
            allow_dirty=True,
        )
    )
    record = json.loads((WORK_DIR / f"push-{VARIANT}.json").read_text())
    return record["by_digest"]


def comparable(objects: Sequence[dict]) -> dict[str, dict]:
    """Objects keyed by apiVersion, kind and name, for an order-free comparison."""
    return {f"{o.get('apiVersion')} {kustomize.ref(o)}": o for o in objects}


def differences(ours: Sequence[dict], theirs: Sequence[dict]) -> list[str]:
    """How two renderings differ: objects only one has, and objects that differ (the first paths)."""
    mine, real = comparable(ours), comparable(theirs)
    found = [f"only ci/deploy/kustomize.py renders {key}" for key in sorted(mine.keys() - real.keys())]
    found += [f"only kustomize renders {key}" for key in sorted(real.keys() - mine.keys())]
    for key in sorted(mine.keys() & real.keys()):
        paths = _diff(mine[key], real[key], "")
        if paths:
            found.append(f"{key} differs at {', '.join(paths[:5])}")
    return found


def _diff(a: Any, b: Any, at: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for key in sorted(a.keys() | b.keys()) for p in _diff(a.get(key), b.get(key), f"{at}/{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _diff(x, y, f"{at}/{i}")]
    return [] if a == b else [at or "/"]


def smoke_requests(metadata: dict, rows: int = 1) -> tuple[dict, dict]:
    """The /predict and /v2 infer bodies for `rows` rows of zeros, shaped by the model's own metadata."""
    (tensor,) = metadata["inputs"]
    features = int(tensor["shape"][-1])
    predict = {"rows": [[0.0] * features for _ in range(rows)]}
    infer = {
        "inputs": [
            {"name": tensor["name"], "datatype": "FP32", "shape": [rows, features], "data": [0.0] * (rows * features)}
        ]
    }
    return predict, infer


def answer_problems(metadata: dict, predicted: Any, inferred: Any) -> list[str]:
    """Why the two answers for the same row are not one consistent prediction, or []."""
    problems = []
    if not isinstance(predicted, list) or len(predicted) != 1:
        return [f"/predict answered {str(predicted)[:200]}, not one prediction"]
    prediction = predicted[0]
    probabilities = prediction.get("probabilities") or {}
    if prediction.get("label") not in probabilities:
        problems.append(
            f"/predict's label {prediction.get('label')!r} is not one of its classes {sorted(probabilities)}"
        )
    if abs(sum(probabilities.values()) - 1) > 1e-5:
        problems.append(f"/predict's probabilities sum to {sum(probabilities.values())}, not 1")
    outputs = {o.get("name"): o for o in (inferred or {}).get("outputs", [])}
    names = [o["name"] for o in metadata.get("outputs", [])]
    probability_name = next((n for n in names if n in outputs and outputs[n].get("datatype") == "FP32"), None)
    label_name = next((n for n in names if n in outputs and outputs[n].get("datatype") == "BYTES"), None)
    if probability_name is None or label_name is None:
        return [*problems, f"/v2 infer answered {str(inferred)[:200]}, without the outputs {names}"]
    label = outputs[label_name]["data"][0]
    if label != prediction.get("label"):
        problems.append(f"/v2 infer's label {label!r} is not /predict's {prediction.get('label')!r}")
    v2 = outputs[probability_name]["data"]
    ordered = list(probabilities.values())
    if len(v2) != len(ordered) or any(abs(x - y) > 1e-5 for x, y in zip(v2, ordered, strict=False)):
        problems.append(f"/v2 infer's probabilities {v2} are not /predict's {ordered}")
    if inferred.get("model_version") != prediction.get("model_version"):
        problems.append(
            f"/v2 infer names model {inferred.get('model_version')}, /predict {prediction.get('model_version')}"
        )
    return problems


def smoke(cluster: Cluster, model: str) -> list[tuple[str, str]]:
    """Through the Service: readiness, metadata, one /predict and one /v2 infer; (request, answer) rows."""
    ip = cluster.kubectl("-n", NAMESPACE, "get", "service", "model-server", "-o", "jsonpath={.spec.clusterIP}").strip()
    base = f"http://{ip}:80"
    ready = cluster.curl(f"{base}/readyz")
    metadata = cluster.curl(f"{base}/v2/models/{model}")
    predict_body, infer_body = smoke_requests(metadata)
    predicted = cluster.curl(f"{base}/predict", predict_body)
    inferred = cluster.curl(f"{base}/v2/models/{model}/infer", infer_body)
    if problems := answer_problems(metadata, predicted, inferred):
        raise UserError(f"the deployed service answered inconsistently: {'; '.join(problems)}.")
    return [
        ("GET /readyz", json.dumps(ready)),
        (f"GET /v2/models/{model}", f"inputs {metadata['inputs']}"),
        ("POST /predict (1 row)", json.dumps(predicted)[:160]),
        (f"POST /v2/models/{model}/infer", json.dumps(inferred.get("outputs"))[:160]),
    ]


def deploy(cluster: Cluster, image: str) -> list[tuple[str, str]]:
    """Render, compare with kustomize, apply, wait, and call the service; the summary rows."""
    with step("render, validate and check the cpu manifests (nox -s deploy)"):
        results = render.run(
            [VARIANT], images={VARIANT: image}, digests={}, out_dir=WORK_DIR / "deploy", forms=["kubernetes"]
        )
        print(render.summary(results))
        render.verdict(results)
    (rendered,) = results
    with step("the same layer rendered by kustomize (the node's kubectl)"):
        cluster.copy_in([ROOT / "deploy", rendered.directory], "/tmp/render")
        theirs = cluster.kubectl("kustomize", f"/tmp/render/{rendered.directory.relative_to(ROOT).as_posix()}")
        if found := differences(rendered.objects, [o for o in yaml.safe_load_all(theirs) if o]):
            raise UserError(f"ci/deploy/kustomize.py and kustomize render deploy/ differently: {'; '.join(found)}.")
    manifests = (rendered.directory / "manifests.yaml").read_bytes()
    with step(f"kubectl apply ({len(rendered.objects)} objects) and wait for a ready pod"):
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        print(cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace).encode()))
        print(cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=manifests))
        ready = wait_ready(cluster)
        print(cluster.kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide"))
    with step("one prediction through the Service"):
        rows = smoke(cluster, section("model")["name"])
    return [("image", image), ("kustomize", "same objects as ci/deploy/kustomize.py"), ("ready pods", ready), *rows]


def wait_ready(cluster: Cluster, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Wait until the Deployment has a ready pod (the Service then has an endpoint); `ready/desired`.

    One ready pod, not a finished rollout: the autoscaler raises the count to its minimum of 2, and
    on a runner with 2 CPUs (GitHub's for private repositories) the second pod's 1-CPU request does
    not fit beside the control plane; that is the runner's size, not a fault of the manifests.
    """
    deadline = time.monotonic() + timeout_s
    status: dict = {}
    while time.monotonic() < deadline:
        out = cluster.kubectl("-n", NAMESPACE, "get", "deployment", "model-server", "-o", "jsonpath={.status}")
        status = json.loads(out or "{}")
        if status.get("readyReplicas", 0) >= 1:
            return f"{status['readyReplicas']}/{status.get('replicas', '?')}"
        time.sleep(2)
    raise UserError(
        f"no model-server pod became ready within {timeout_s:.0f} s (status {status}): read the pod events below."
    )


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m ci.deploy.kind [--keep]` or `python -m ci.deploy.kind down`."""
    from ci.engine import ensure_engine
    from ci.project import table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["run", "down"], default="run")
    parser.add_argument("--keep", action="store_true", help="leave the cluster and registry running afterwards")
    args = parser.parse_args(argv)
    cluster = Cluster(ensure_engine(), kind_binary())
    if args.command == "down":
        cluster.down()
        return
    started = time.monotonic()
    try:
        cluster.up()
        with step(f"push the {VARIANT} image to {REGISTRY_HOST} (ci/publish/push.py)"):
            image = push_image()
        rows = deploy(cluster, image)
    except UserError:
        say("the kind deployment failed; the cluster's state follows")
        try:
            print(cluster.diagnostics())
        except UserError as exc:  # the cluster itself may be what failed
            say(f"no diagnostics: {exc}")
        raise
    finally:
        if not args.keep:
            cluster.down()
    print(table([*rows, ("time", f"{time.monotonic() - started:.0f} s")], ("kind", "result")))


if __name__ == "__main__":
    main_guard(main)
