"""PodRuntime init containers: in order, to completion, before the main containers; failures are
retried with back-off (Init:Error, then Init:CrashLoopBackOff) unless restartPolicy is Never."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from hcpsim.runtime import CommandRunner, ContainerSpec, Mount, PodRuntime


def _wait_for(pred: Any, timeout: float = 10) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return bool(pred())


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[PodRuntime]:
    rt = PodRuntime(tmp_path / "rt", backoff_base=0.2, backoff_max=1.0)
    rt.register_runner("busybox", CommandRunner())
    yield rt
    rt.close()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def _start(rt: PodRuntime, data: Path, inits: list[ContainerSpec], main: ContainerSpec | None = None, **kw: Any) -> None:
    main = main or ContainerSpec("main", "busybox", command=["sh", "-c", "cat /var/lib/data/log; exec sleep 60"])
    names = [c.name for c in inits] + [main.name]
    rt.start_pod("u1", "ns1", "pod1", [main], {n: [Mount("/var/lib/data", data)] for n in names},
                 init_containers=inits, **kw)


def test_init_containers_run_in_order_before_main(runtime: PodRuntime, data: Path) -> None:
    inits = [ContainerSpec(f"init{i}", "busybox", command=["sh", "-c", f"sleep 0.{i}; echo init{i} >> /var/lib/data/log"])
             for i in (1, 2)]
    _start(runtime, data, inits)
    # While init1 runs, init2 and main wait.
    assert _wait_for(lambda: runtime.init_container_states("u1")["init1"].state == "running")
    assert runtime.init_container_states("u1")["init2"].reason == "PodInitializing"
    assert runtime.container_states("u1")["main"].reason == "PodInitializing"
    assert _wait_for(lambda: runtime.container_states("u1")["main"].state == "running")
    inits_done = runtime.init_container_states("u1")
    assert [(s.state, s.reason, s.exit_code) for s in inits_done.values()] == [("terminated", "Completed", 0)] * 2
    assert list(inits_done) == ["init1", "init2"]
    assert (data / "log").read_text() == "init1\ninit2\n"
    assert _wait_for(lambda: runtime.log_path("u1", "main").read_text() == "init1\ninit2\n")


def test_failing_init_container_backs_off_and_blocks_main(runtime: PodRuntime, data: Path) -> None:
    inits = [ContainerSpec("fail", "busybox", command=["sh", "-c", "echo nope; exit 2"])]
    _start(runtime, data, inits)
    assert _wait_for(lambda: runtime.init_container_states("u1")["fail"].restart_count >= 2)
    assert _wait_for(lambda: runtime.init_container_states("u1")["fail"].reason == "CrashLoopBackOff")
    st = runtime.init_container_states("u1")["fail"]
    assert st.last_terminated is not None and (st.last_terminated.exit_code, st.last_terminated.reason) == (2, "Error")
    assert runtime.container_states("u1")["main"].reason == "PodInitializing"
    assert runtime.log_path("u1", "fail", previous=True).read_text() == "nope\n"


def test_init_container_that_later_succeeds_lets_main_start(runtime: PodRuntime, data: Path) -> None:
    # Fails until a file appears (e.g. a dependency becoming reachable), then the pod proceeds.
    inits = [ContainerSpec("wait", "busybox", command=["sh", "-c", "test -f /var/lib/data/go"])]
    (data / "log").write_text("")
    _start(runtime, data, inits)
    assert _wait_for(lambda: runtime.init_container_states("u1")["wait"].restart_count >= 1)
    (data / "go").touch()
    assert _wait_for(lambda: runtime.container_states("u1")["main"].state == "running", timeout=15)
    st = runtime.init_container_states("u1")["wait"]
    assert (st.state, st.exit_code) == ("terminated", 0) and st.restart_count >= 1


def test_restart_policy_never_leaves_the_pod_failed(runtime: PodRuntime, data: Path) -> None:
    _start(runtime, data, [ContainerSpec("fail", "busybox", command=["false"])], restart_policy="Never")
    assert _wait_for(lambda: runtime.init_container_states("u1")["fail"].state == "terminated")
    time.sleep(0.3)
    st = runtime.init_container_states("u1")["fail"]
    assert (st.exit_code, st.restart_count) == (1, 0)
    assert runtime.container_states("u1")["main"].reason == "PodInitializing"


def test_init_container_without_process_completes_at_once(runtime: PodRuntime, data: Path) -> None:
    (data / "log").write_text("")
    _start(runtime, data, [ContainerSpec("noop", "some/other-image")])
    assert _wait_for(lambda: runtime.container_states("u1")["main"].state == "running")
    assert runtime.init_container_states("u1")["noop"].reason == "Completed"


def test_stop_during_init_leaves_nothing_running(runtime: PodRuntime, data: Path) -> None:
    _start(runtime, data, [ContainerSpec("slow", "busybox", command=["sleep", "30"])])
    assert _wait_for(lambda: runtime.init_container_states("u1")["slow"].state == "running")
    pid = runtime.init_container_states("u1")["slow"].pid
    runtime.stop_pod("u1", grace_seconds=0.2)
    st = runtime.init_container_states("u1")["slow"]
    assert st.state == "terminated"
    assert runtime.container_states("u1")["main"].reason == "PodInitializing"
    assert pid is not None and _wait_for(lambda: not Path(f"/proc/{pid}").exists() or
                                         Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z")
