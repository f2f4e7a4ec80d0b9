"""Pod exec and cp against the simulator, through the official client's stream and kubectl:
text, binary, exit codes, stdin, container paths from volume mounts, cp both ways."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL

IMAGE = "registry.access.redhat.com/ubi9/ubi:latest"


def _wait_running(core: client.CoreV1Api, namespace: str, name: str) -> client.V1Pod:
    for event in watch.Watch().stream(core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}",
                                      timeout_seconds=30):
        if event["object"].status.phase == "Running":
            return event["object"]
    raise AssertionError(f"pod {namespace}/{name} did not become Running")


@pytest.fixture
def pod(api_client: client.ApiClient, namespace: str) -> str:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "tls"}, "stringData": {"ca.crt": "CA-PEM"}})
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": "shell"},
        "spec": {"containers": [{"name": "main", "image": IMAGE, "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib"},
            {"name": "tls", "mountPath": "/etc/etcd/tls/etcd-ca"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "tls", "secret": {"secretName": "tls"}}]}})
    _wait_running(core, namespace, "shell")
    return "shell"


def _wait_gone(core: client.CoreV1Api, namespace: str, name: str, failure: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_pod(name, namespace)
        except client.ApiException as e:
            assert e.status == 404
            return
        time.sleep(0.1)
    raise AssertionError(failure)


def _exec(api_client: client.ApiClient, namespace: str, pod: str, command: list[str], **kw: object) -> object:
    return stream(client.CoreV1Api(api_client).connect_get_namespaced_pod_exec, pod, namespace, command=command,
                  stderr=True, stdin=False, stdout=True, tty=False, **kw)


def test_exec_text_and_container_paths(api_client: client.ApiClient, namespace: str, pod: str) -> None:
    out = _exec(api_client, namespace, pod, ["sh", "-c", "mkdir -p /var/lib/data && echo v1 > /var/lib/data/x && "
                                                           "cat /var/lib/data/x /etc/etcd/tls/etcd-ca/ca.crt"])
    assert out == "v1\nCA-PEM"
    # The PVC outlives the process: a second exec sees the file.
    assert _exec(api_client, namespace, pod, ["cat", "/var/lib/data/x"]) == "v1\n"
    # The host does not get the pod's paths.
    assert not Path("/etc/etcd/tls/etcd-ca/ca.crt").exists()


def test_exec_exit_codes_and_stderr(api_client: client.ApiClient, namespace: str, pod: str) -> None:
    resp = _exec(api_client, namespace, pod, ["sh", "-c", "echo out; echo err >&2; exit 7"], _preload_content=False)
    resp.run_forever(timeout=20)
    assert resp.read_stdout() == "out\n"
    assert resp.read_stderr() == "err\n"
    assert resp.returncode == 7
    resp = _exec(api_client, namespace, pod, ["true"], _preload_content=False)
    resp.run_forever(timeout=20)
    assert resp.returncode == 0
    resp = _exec(api_client, namespace, pod, ["no-such-command-xyz"], _preload_content=False)
    resp.run_forever(timeout=20)
    assert resp.returncode != 0
    assert "executable file not found" in resp.read_stderr()


def test_exec_binary_stdout_is_exact(api_client: client.ApiClient, namespace: str, pod: str, cluster) -> None:  # type: ignore[no-untyped-def]
    payload = os.urandom(3 * 1024 * 1024 + 17)
    host_dir = cluster.kubelet.pvc_dir(namespace, "data")  # test set-up only: place bytes in the PVC
    (host_dir / "blob").write_bytes(payload)
    resp = _exec(api_client, namespace, pod, ["cat", "/var/lib/blob"], _preload_content=False, binary=True)
    chunks = []
    while resp.is_open():
        resp.update(timeout=5)
        if resp.peek_stdout():
            chunks.append(resp.read_stdout())
    got = b"".join(chunks)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_exec_stdin(api_client: client.ApiClient, namespace: str, pod: str) -> None:
    resp = stream(client.CoreV1Api(api_client).connect_get_namespaced_pod_exec, pod, namespace,
                  command=["sh", "-c", "head -c 11 > /var/lib/in.txt; cat /var/lib/in.txt"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("hello stdin")
    deadline = time.monotonic() + 20
    out = ""
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        out += resp.read_stdout() if resp.peek_stdout() else ""
    assert out == "hello stdin"


def test_exec_refused_for_unknown_container(api_client: client.ApiClient, namespace: str, pod: str) -> None:
    # The server refuses the upgrade with a 400 Status; the official client (36.x) then fails while
    # decoding it, so the Status is in the chained ApiException.
    with pytest.raises(Exception) as err:
        _exec(api_client, namespace, pod, ["true"], container="nope")
    chain = f"{err.value} {err.value.__context__}"
    assert "Handshake status 400" in chain
    assert "container nope is not valid for pod shell" in chain


def test_kubectl_exec_and_cp(kubectl, namespace: str, pod: str, tmp_path: Path) -> None:
    result = kubectl.run("exec", "-n", namespace, pod, "--", "sh", "-c", "echo hi; exit 4", check=False)
    assert result.returncode == 4
    assert result.stdout == b"hi\n"
    result = kubectl.run("exec", "-i", "-n", namespace, pod, "--", "sh", "-c", "cat > /var/lib/from-stdin; wc -c < /var/lib/from-stdin",
                         input=b"x" * 1000)
    assert result.stdout.strip() == b"1000"

    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(2 * 1024 * 1024))
    kubectl.run("cp", str(src), f"{namespace}/{pod}:/var/lib/up.bin")
    digest = kubectl.run("exec", "-n", namespace, pod, "--", "sha256sum", "/var/lib/up.bin").stdout.split()[0].decode()
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    back = tmp_path / "down.bin"
    kubectl.run("cp", f"{namespace}/{pod}:/var/lib/up.bin", str(back))
    assert back.read_bytes() == src.read_bytes()


def test_pod_log_and_deletion_stops_processes(api_client: client.ApiClient, namespace: str, cluster) -> None:  # type: ignore[no-untyped-def]
    from hcpsim.runtime.pod_runtime import CommandRunner

    cluster.runtime.register_runner("example.com/looper", CommandRunner())
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "looper"}, "spec": {"containers": [{
        "name": "main", "image": "example.com/looper:1", "command": ["sh", "-c", "echo started; exec sleep 300"]}]}})
    pod = _wait_running(core, namespace, "looper")

    def log() -> bytes:
        # The 36.x client turns a str response into "b'...'"; read the raw body as a real caller must.
        return core.read_namespaced_pod_log("looper", namespace, _preload_content=False).data

    deadline = time.monotonic() + 10
    while b"started" not in log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log() == b"started\n"
    pid = cluster.runtime.container_states(pod.metadata.uid)["main"].pid
    assert pid and Path(f"/proc/{pid}").exists()
    core.delete_namespaced_pod("looper", namespace)
    _wait_gone(core, namespace, "looper", "pod was not removed after its processes stopped")
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/status").read_text().find("zombie") >= 0


def test_a_terminating_pod_stays_until_stopped_and_a_shorter_grace_period_brings_its_kill_forward(
        api_client: client.ApiClient, namespace: str, cluster) -> None:  # type: ignore[no-untyped-def]
    """As a real API server: deleting a pod that is already terminating does not remove it; a delete
    with a shorter grace period shortens its deletionGracePeriodSeconds (its SIGKILL comes sooner),
    a longer one changes nothing, grace period 0 removes it at once (a force delete)."""
    from hcpsim.runtime.pod_runtime import CommandRunner

    cluster.runtime.register_runner("example.com/stubborn", CommandRunner())
    core = client.CoreV1Api(api_client)

    def stubborn(name: str) -> None:  # ignores SIGTERM: only the SIGKILL at the end of its grace period stops it
        core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": {
            "terminationGracePeriodSeconds": 30, "containers": [{
                "name": "main", "image": "example.com/stubborn:1",
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]}]}})
        _wait_running(core, namespace, name)

    def grace_of(name: str) -> int | None:
        return core.read_namespaced_pod(name, namespace).metadata.deletion_grace_period_seconds

    stubborn("shortened")
    core.delete_namespaced_pod("shortened", namespace)
    assert grace_of("shortened") == 30
    core.delete_namespaced_pod("shortened", namespace)  # again, the same grace: still there, unchanged
    assert grace_of("shortened") == 30
    core.delete_namespaced_pod("shortened", namespace, grace_period_seconds=1)
    assert grace_of("shortened") == 1
    core.delete_namespaced_pod("shortened", namespace, grace_period_seconds=5)  # longer: no change
    assert grace_of("shortened") == 1
    _wait_gone(core, namespace, "shortened", "the pod was not removed after its grace period")

    stubborn("forced")
    core.delete_namespaced_pod("forced", namespace)
    core.delete_namespaced_pod("forced", namespace, grace_period_seconds=0)
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_pod("forced", namespace)
    assert gone.value.status == 404


def test_pod_log_previous_is_the_last_terminated_run(api_client: client.ApiClient, namespace: str, cluster,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    """`kubectl logs --previous`: the run before the current one; a 400 while there was none."""
    from hcpsim.runtime.pod_runtime import CommandRunner

    cluster.runtime.register_runner("example.com/counter", CommandRunner())
    core = client.CoreV1Api(api_client)
    runs = tmp_path / "runs"  # outlives a container's restart, as a volume would
    core.create_namespaced_pod(namespace, {"metadata": {"name": "counter"}, "spec": {"containers": [{
        "name": "main", "image": "example.com/counter:1", "command": ["sh", "-c",
            f"n=$(cat {runs} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {runs}; echo run $n; "
            "[ $n -ge 2 ] && exec sleep 300; exit 1"]}]}})
    _wait_running(core, namespace, "counter")

    def log(previous: bool) -> bytes:
        return core.read_namespaced_pod_log("counter", namespace, previous=previous, _preload_content=False).data

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if log(False) == b"run 2\n":
                break
        except client.ApiException:
            pass
        time.sleep(0.1)
    assert (log(False), log(True)) == (b"run 2\n", b"run 1\n"), core.read_namespaced_pod("counter", namespace).status.container_statuses
    core.delete_namespaced_pod("counter", namespace)
    # a container that never restarted has no previous run
    core.create_namespaced_pod(namespace, {"metadata": {"name": "once"}, "spec": {"containers": [{
        "name": "main", "image": "example.com/counter:1", "command": ["sh", "-c", "echo one; exec sleep 300"]}]}})
    _wait_running(core, namespace, "once")
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_pod_log("once", namespace, previous=True)
    assert err.value.status == 400
    assert json.loads(err.value.body)["message"] == 'previous terminated container "main" in pod "once" not found'
    core.delete_namespaced_pod("once", namespace)


def test_injected_stream_cut_drops_the_connection_without_exit_status(api_client: client.ApiClient, namespace: str,
                                                                      pod: str, cluster) -> None:  # type: ignore[no-untyped-def]
    (cluster.kubelet.pvc_dir(namespace, "data") / "big").write_bytes(b"z" * (4 * 1024 * 1024))
    cluster.faults.cut_next_exec(after_bytes=1024 * 1024)
    resp = _exec(api_client, namespace, pod, ["cat", "/var/lib/big"], _preload_content=False, binary=True)
    got = 0
    while resp.is_open():
        resp.update(timeout=5)
        if resp.peek_stdout():
            got += len(resp.read_stdout())
    assert got == 1024 * 1024
    # No exit status arrived: a caller must treat the transfer as failed (the 36.x client's
    # `returncode` even raises on it).
    assert resp.read_channel(ERROR_CHANNEL) == b""
    # The next exec is whole again.
    assert _exec(api_client, namespace, pod, ["sh", "-c", "wc -c < /var/lib/big"]).strip() == str(4 * 1024 * 1024)


def test_one_pod_cannot_mount_volumes_of_two_zones(api_client: client.ApiClient, namespace: str) -> None:
    """A management cluster's volumes are zonal (a StatefulSet's claim N in zone N mod 3, as HA etcd's
    members are spread): a pod mounting data-etcd-0 and data-etcd-1 stays Pending with the scheduler's
    volume node affinity conflict; a pod mounting one of them runs."""
    core = client.CoreV1Api(api_client)
    for claim in ("data-etcd-0", "data-etcd-1"):
        core.create_namespaced_persistent_volume_claim(namespace, {
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})

    def pod(name: str, claims: list[str]) -> dict:
        return {"metadata": {"name": name},
                "spec": {"containers": [{"name": "main", "image": IMAGE, "volumeMounts": [
                    {"name": f"v{i}", "mountPath": f"/data/{c}"} for i, c in enumerate(claims)]}],
                    "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}}
                                for i, c in enumerate(claims)]}}

    core.create_namespaced_pod(namespace, pod("both", ["data-etcd-0", "data-etcd-1"]))
    core.create_namespaced_pod(namespace, pod("one", ["data-etcd-1"]))
    _wait_running(core, namespace, "one")
    deadline = time.monotonic() + 10
    while True:
        both = core.read_namespaced_pod("both", namespace)
        scheduled = next((c for c in both.status.conditions or [] if c.type == "PodScheduled"), None)
        if scheduled is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert both.spec.node_name is None and both.status.phase == "Pending"
    assert scheduled is not None and scheduled.status == "False" and scheduled.reason == "Unschedulable"
    assert "volume node affinity conflict" in (scheduled.message or "")
