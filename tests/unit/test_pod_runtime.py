"""PodRuntime: sandboxes (namespace and rewrite modes), binaries, main-process runners, stop."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from hcpsim.runtime import CommandRunner, ContainerContext, ContainerSpec, Mount, PodRuntime, ProcessSpec
from hcpsim.runtime.sandbox import probe_namespace_support


def _run(spec: ProcessSpec) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(spec.argv, env=spec.env, cwd=spec.cwd, capture_output=True, timeout=30)


def _procs_with(needle: str) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if needle in cmd:
                found.append(int(d.name))
    return found


def _wait_for(pred: Any, timeout: float = 10) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


@pytest.fixture(params=["namespace", "rewrite"])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "namespace" and probe_namespace_support(tmp_path / "probe") != "namespace":
        pytest.skip("user namespaces / overlayfs refused on this machine")
    return str(request.param)


@pytest.fixture
def vols(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for n in ("data", "tls", "lib"):
        out[n] = tmp_path / "vols" / n
        out[n].mkdir(parents=True)
    return out


@pytest.fixture
def runtime(tmp_path: Path, mode: str) -> Iterator[PodRuntime]:
    rt = PodRuntime(tmp_path / "rt", binaries={"/usr/bin/etcdctl-sim": "/bin/echo"}, mode=mode,  # type: ignore[arg-type]
                    backoff_base=0.2, backoff_max=1.0)
    yield rt
    rt.close()


def _start(rt: PodRuntime, vols: dict[str, Path], containers: list[ContainerSpec] | None = None, **kw: Any) -> None:
    containers = containers or [ContainerSpec("main", "busybox")]
    mounts = [Mount("/var/lib/data", vols["data"]), Mount("/etc/etcd/tls/client", vols["tls"], read_only=True)]
    rt.start_pod("u1", "ns1", "pod1", containers, {c.name: mounts for c in containers}, **kw)


def test_volume_file_seen_at_container_path(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    _start(runtime, vols)
    (vols["data"] / "x").write_text("hello\n")
    r = _run(runtime.exec_spec("u1", "main", ["cat", "/var/lib/data/x"]))
    assert (r.returncode, r.stdout) == (0, b"hello\n"), r.stderr
    # Inside a shell command line too (rewrite mode rewrites words of `sh -c` scripts).
    r = _run(runtime.exec_spec("u1", "main", ["sh", "-c", "echo more >> /var/lib/data/x && cat /var/lib/data/x"]))
    assert r.stdout == b"hello\nmore\n", r.stderr
    assert (vols["data"] / "x").read_text() == "hello\nmore\n"


def test_etc_mount_paths_that_do_not_exist_on_host(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    assert not os.path.exists("/etc/etcd/tls")
    (vols["tls"] / "ca.crt").write_text("CA\n")
    _start(runtime, vols)
    r = _run(runtime.exec_spec("u1", "main", ["cat", "/etc/etcd/tls/client/ca.crt"]))
    assert (r.returncode, r.stdout) == (0, b"CA\n"), r.stderr
    r = _run(runtime.exec_spec("u1", "main", ["sh", "-c", "ls /etc/etcd/tls/client/"]))
    assert r.stdout == b"ca.crt\n"
    assert not os.path.exists("/etc/etcd"), "the host filesystem must not change"


def test_read_only_mount_in_namespace_mode(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    if runtime.mode != "namespace":
        pytest.skip("rewrite mode cannot enforce read-only mounts")
    _start(runtime, vols)
    r = _run(runtime.exec_spec("u1", "main", ["touch", "/etc/etcd/tls/client/new"]))
    assert r.returncode != 0 and b"Read-only" in r.stderr
    assert not (vols["tls"] / "new").exists()


def test_binary_mapping(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    _start(runtime, vols)
    for argv in (["/usr/bin/etcdctl-sim", "by", "path"], ["etcdctl-sim", "by", "name"]):
        r = _run(runtime.exec_spec("u1", "main", argv))
        assert (r.returncode, r.stdout) == (0, (" ".join(argv[1:]) + "\n").encode()), r.stderr
    assert not os.path.exists("/usr/bin/etcdctl-sim")


def test_command_not_found(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    _start(runtime, vols)
    r = _run(runtime.exec_spec("u1", "main", ["no-such-binary-xyz"]))
    assert r.returncode == 127
    assert b'exec: "no-such-binary-xyz": executable file not found in $PATH' in r.stderr


def test_rewrite_of_arguments(tmp_path: Path, vols: dict[str, Path]) -> None:
    rt = PodRuntime(tmp_path / "rw", mode="rewrite")
    try:
        _start(rt, vols)
        sb = rt._pods["u1"].containers["main"].sandbox
        assert sb.rewrite_arg("--cacert=/etc/etcd/tls/client/ca.crt") == f"--cacert={vols['tls']}/ca.crt"
        assert sb.rewrite_arg("cat /var/lib/data") == f"cat {vols['data']}"
        assert sb.rewrite_arg("/var/lib/database") == "/var/lib/database"   # not a path prefix match
        assert sb.rewrite_arg("x/var/lib/data/y") == "x/var/lib/data/y"
    finally:
        rt.close()


def test_default_container_is_running_without_process(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    _start(runtime, vols)
    st = runtime.container_states("u1")["main"]
    assert st.state == "running" and st.pid is None and st.started_at is not None
    assert "running" in st.k8s_state()
    runtime.stop_pod("u1")
    assert runtime.container_states("u1")["main"].state == "terminated"


def test_main_process_exit_is_reported(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    runtime.register_runner("busybox", CommandRunner())
    changes: list[str] = []
    runtime.on_change = changes.append
    (vols["data"] / "x").write_text("payload\n")
    _start(runtime, vols, [ContainerSpec("main", "busybox", command=["sh", "-c", "cat /var/lib/data/x; exit 3"])],
           restart_policy="Never")
    assert _wait_for(lambda: runtime.container_states("u1")["main"].state == "terminated")
    st = runtime.container_states("u1")["main"]
    assert (st.exit_code, st.reason, st.restart_count) == (3, "Error", 0)
    assert st.k8s_state()["terminated"]["exitCode"] == 3
    assert runtime.log_path("u1", "main").read_bytes() == b"payload\n"
    assert changes and set(changes) == {"u1"}


def test_crash_loop_back_off(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    runtime.register_runner(lambda image: image.startswith("crash"), CommandRunner())
    _start(runtime, vols, [ContainerSpec("main", "crash:1", command=["sh", "-c", "echo run; exit 1"])])
    assert _wait_for(lambda: runtime.container_states("u1")["main"].restart_count >= 2)
    assert _wait_for(lambda: runtime.container_states("u1")["main"].reason == "CrashLoopBackOff")
    st = runtime.container_states("u1")["main"]
    assert st.state == "waiting" and "back-off" in (st.message or "")
    assert st.last_terminated is not None and st.last_terminated.exit_code == 1
    assert st.k8s_last_state()["terminated"]["reason"] == "Error"
    assert runtime.log_path("u1", "main", previous=True).read_bytes() == b"run\n"


def test_on_failure_policy_does_not_restart_success(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    runtime.register_runner("busybox", CommandRunner())
    _start(runtime, vols, [ContainerSpec("main", "busybox", command=["true"])], restart_policy="OnFailure")
    assert _wait_for(lambda: runtime.container_states("u1")["main"].state == "terminated")
    st = runtime.container_states("u1")["main"]
    assert (st.exit_code, st.reason, st.restart_count) == (0, "Completed", 0)


class _Daemonizing:
    """A main process that leaves children behind, one of them in its own session.

    Processes are recognised by their `sleep <marker><n>` argument (GNU sleep takes any number).
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def main_argv(self, ctx: ContainerContext) -> list[str] | None:
        m = self.marker
        return ["sh", "-c", f"setsid sleep {m}1 & sleep {m}2 & sleep {m}3"]


def test_stop_leaves_no_process(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    marker = f"9{os.getpid()}{len(runtime.mode)}"
    runtime.register_runner("daemon", _Daemonizing(marker))
    _start(runtime, vols, [ContainerSpec("main", "daemon")])
    assert _wait_for(lambda: len(_procs_with(marker)) >= 3)
    # An exec'd process the runtime was told about is killed too.
    spec = runtime.exec_spec("u1", "main", ["sleep", f"{marker}4"])
    p = subprocess.Popen(spec.argv, env=spec.env, cwd=spec.cwd, start_new_session=True)
    assert spec.on_start is not None
    spec.on_start(p.pid)
    assert _wait_for(lambda: len(_procs_with(marker)) >= 4)
    runtime.stop_pod("u1", grace_seconds=0.5)
    p.wait(timeout=10)
    left = _procs_with(marker)
    if runtime.mode == "rewrite":
        # Without a PID namespace a process that setsid()s escapes its group: the documented limit.
        left = [pid for pid in left if f"{marker}1" not in Path(f"/proc/{pid}/cmdline").read_text()]
        for pid in _procs_with(marker):
            os.kill(pid, 9)
    assert _wait_for(lambda: not left or not _procs_with(marker)), left
    st = runtime.container_states("u1")["main"]
    assert st.state == "terminated"


def test_a_shorter_grace_given_as_the_stop_begins_is_kept(runtime: PodRuntime, vols: dict[str, Path]) -> None:
    """A delete that shortens the grace period may reach the runtime before the first delete's stop has
    set its deadline (the kubelet stops a pod on a thread of its own): the shorter one still wins."""
    import threading

    runtime.register_runner("stubborn", CommandRunner())
    _start(runtime, vols, [ContainerSpec("main", "stubborn", command=["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])])
    assert _wait_for(lambda: runtime.container_states("u1")["main"].state == "running")
    runtime.shorten_stop("u1", 0.2)
    stop = threading.Thread(target=runtime.stop_pod, args=("u1",), kwargs={"grace_seconds": 120}, daemon=True)
    stop.start()
    stop.join(30)  # it ignores SIGTERM: only the SIGKILL at the shortened deadline ends it
    assert not stop.is_alive()
    assert runtime.container_states("u1")["main"].state == "terminated"


def test_close_stops_everything(tmp_path: Path, vols: dict[str, Path]) -> None:
    marker = f"8{os.getpid()}"
    rt = PodRuntime(tmp_path / "rt2")
    rt.register_runner("daemon", _Daemonizing(marker))
    rt.start_pod("a", "ns", "a", [ContainerSpec("main", "daemon")], {})
    assert _wait_for(lambda: len(_procs_with(marker)) >= 2)
    rt.close()
    if rt.mode == "rewrite":
        for pid in _procs_with(marker):
            os.kill(pid, 9)
    assert _wait_for(lambda: not _procs_with(marker))
