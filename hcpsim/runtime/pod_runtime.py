"""PodRuntime: pods as sandboxes of local processes (the container-runtime half of a kubelet).

API (all thread-safe; the kubelet-like controller calls it, exec/log routes use it):

    rt = PodRuntime(data_dir, binaries={"/usr/bin/etcdctl": "/opt/etcd/etcdctl"}, on_change=cb)
    rt.register_runner("quay.io/coreos/etcd", EtcdRunner())      # image prefix, exact image, or predicate
    rt.start_pod(uid, namespace, name, [ContainerSpec(...)], {"c": [Mount("/var/lib", dir)]},
                 restart_policy="Always", init_containers=[ContainerSpec("init", ...)])
    rt.container_states(uid)   -> {"c": ContainerState(...)}   (.k8s_state() / .k8s_last_state())
    rt.init_container_states(uid) -> {"init": ContainerState(...)}
    rt.exec_spec(uid, "c", ["cat", "/var/lib/x"]) -> ProcessSpec(argv, env, cwd)   # for kubectl exec
    rt.log_path(uid, "c", previous=False) -> Path     # raw stdout+stderr of the main process
    rt.stop_pod(uid, grace_seconds=0); rt.remove_pod(uid); rt.close()

What a container's MAIN process is depends on its image: `ContainerRunner.main_argv(ctx)` returns an
argv (run inside the sandbox like an exec, in a private PID namespace when available) or None.
Default runner: no process; the container counts as running until the pod stops (what `sleep
infinity` would look like, at no cost). `CommandRunner` runs the container's own command+args.

Exits: the runtime applies restartPolicy like the kubelet: the first restart is immediate, then
waiting(CrashLoopBackOff) for backoff_base * 2^(n-1) seconds capped at backoff_max (kubelet: 10s, 5m),
reset after a run of 2 * backoff_max.

Init containers run one at a time, in order, each to completion, before any main container starts
(main containers wait in waiting(PodInitializing)). A failing init container is restarted with the
same back-off unless restartPolicy is Never (then the pod stays failed and the main containers never
start); one whose image has no main process completes at once. `on_change(uid)` is called (from a runtime thread) whenever a
container state changes, so the controller can refresh the pod status without polling.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal, Protocol

from hcpsim.runtime.sandbox import ContainerSandbox, Mode, Mount, ProcessSpec, probe_namespace_support

RestartPolicy = Literal["Always", "OnFailure", "Never"]


@dataclass
class ContainerSpec:
    name: str
    image: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None

    @classmethod
    def from_k8s(cls, c: dict[str, Any]) -> ContainerSpec:
        """From a pod's `spec.containers[i]` (plain `value` env entries only; valueFrom is the caller's)."""
        env = {e["name"]: str(e.get("value", "")) for e in c.get("env") or [] if "valueFrom" not in e}
        return cls(name=c["name"], image=c.get("image", ""), command=list(c.get("command") or []),
                   args=list(c.get("args") or []), env=env, working_dir=c.get("workingDir"))


@dataclass(frozen=True)
class ContainerContext:
    """What a runner may need to build the main process."""

    uid: str
    namespace: str
    pod_name: str
    spec: ContainerSpec
    mounts: list[Mount]
    sandbox_dir: Path


class ContainerRunner(Protocol):
    def main_argv(self, ctx: ContainerContext) -> list[str] | None:
        """The main process argv (absolute container paths work), or None for no process."""
        ...


class NoProcessRunner:
    def main_argv(self, ctx: ContainerContext) -> list[str] | None:
        return None


class CommandRunner:
    """Runs the container's own `command + args` (for images whose entrypoint exists locally)."""

    def __init__(self, default: list[str] | None = None) -> None:
        self.default = default or []

    def main_argv(self, ctx: ContainerContext) -> list[str] | None:
        argv = ctx.spec.command + ctx.spec.args
        return argv or (self.default or None)


def _rfc3339(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ContainerState:
    """One container's state as the kubelet reports it (`state`, `lastState`, `restartCount`)."""

    name: str
    state: Literal["waiting", "running", "terminated"]
    reason: str | None = None          # waiting: ContainerCreating/CrashLoopBackOff; terminated: Completed/Error
    message: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    started_at: float | None = None    # epoch seconds
    finished_at: float | None = None
    restart_count: int = 0
    pid: int | None = None
    last_terminated: ContainerState | None = None

    def k8s_state(self) -> dict[str, Any]:
        if self.state == "running":
            return {"running": {"startedAt": _rfc3339(self.started_at)}}
        if self.state == "waiting":
            w: dict[str, Any] = {"reason": self.reason}
            if self.message:
                w["message"] = self.message
            return {"waiting": w}
        t: dict[str, Any] = {"exitCode": self.exit_code, "reason": self.reason,
                             "startedAt": _rfc3339(self.started_at), "finishedAt": _rfc3339(self.finished_at)}
        if self.signal:
            t["signal"] = self.signal
        if self.message:
            t["message"] = self.message
        return {"terminated": t}

    def k8s_last_state(self) -> dict[str, Any]:
        return self.last_terminated.k8s_state() if self.last_terminated else {}


class _Container:
    def __init__(self, ctx: ContainerContext, sandbox: ContainerSandbox, argv: list[str] | None) -> None:
        self.ctx = ctx
        self.sandbox = sandbox
        self.argv = argv
        self.state = ContainerState(name=ctx.spec.name, state="waiting", reason="ContainerCreating")
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread: threading.Thread | None = None


class _Pod:
    def __init__(self, uid: str, namespace: str, name: str, root: Path, restart_policy: RestartPolicy) -> None:
        self.uid, self.namespace, self.name, self.root = uid, namespace, name, root
        self.restart_policy = restart_policy
        self.containers: dict[str, _Container] = {}
        self.init_containers: dict[str, _Container] = {}
        self.init_thread: threading.Thread | None = None
        self.stopping = threading.Event()
        # time.time() when a graceful stop turns to SIGKILL; `shorten_stop` may bring it forward, also
        # before `stop_pod`'s thread has set it
        self.stop_deadline = math.inf
        self.exec_pids: set[int] = set()


class PodRuntime:
    def __init__(self, data_dir: Path, binaries: dict[str, str] | None = None, *,
                 mode: Mode | None = None, on_change: Callable[[str], None] | None = None,
                 backoff_base: float = 10.0, backoff_max: float = 300.0) -> None:
        """`mode` forces "namespace" or "rewrite" (tests); default: probe once."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.binaries = dict(binaries or {})
        self.mode: Mode = mode or probe_namespace_support(self.data_dir / ".probe")
        self.on_change = on_change
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self._runners: list[tuple[str | Callable[[str], bool], ContainerRunner]] = []
        self._default_runner: ContainerRunner = NoProcessRunner()
        self._pods: dict[str, _Pod] = {}
        self._lock = threading.RLock()

    # --- runners -------------------------------------------------------------------------------

    def register_runner(self, match: str | Callable[[str], bool], runner: ContainerRunner) -> None:
        """`match`: exact image, image prefix (e.g. "quay.io/coreos/etcd" matches any tag), or predicate.
        Later registrations win over earlier ones."""
        self._runners.insert(0, (match, runner))

    def runner_for(self, image: str) -> ContainerRunner:
        for match, runner in self._runners:
            if callable(match):
                if match(image):
                    return runner
            elif image == match or image.startswith(match):
                return runner
        return self._default_runner

    # --- lifecycle -----------------------------------------------------------------------------

    def start_pod(self, uid: str, namespace: str, name: str, containers: list[ContainerSpec],
                  mounts_by_container: dict[str, list[Mount]] | None = None,
                  restart_policy: RestartPolicy = "Always", init_containers: list[ContainerSpec] | None = None) -> None:
        mounts_by_container = mounts_by_container or {}
        with self._lock:
            if uid in self._pods:
                raise ValueError(f"pod {uid} already started")
            root = self.data_dir / "pods" / uid
            pod = _Pod(uid, namespace, name, root, restart_policy)
            self._pods[uid] = pod
        for spec in init_containers or []:
            c = self._prepare(pod, spec, mounts_by_container)
            c.state = ContainerState(name=spec.name, state="waiting", reason="PodInitializing")
            pod.init_containers[spec.name] = c
        for spec in containers:
            c = self._prepare(pod, spec, mounts_by_container)
            if pod.init_containers:
                c.state = ContainerState(name=spec.name, state="waiting", reason="PodInitializing")
            pod.containers[spec.name] = c
        if pod.init_containers:
            pod.init_thread = threading.Thread(target=self._initialize, args=(pod,), daemon=True, name=f"pod-{name}-init")
            pod.init_thread.start()
        else:
            self._start_containers(pod)
        self._changed(uid)

    def _prepare(self, pod: _Pod, spec: ContainerSpec, mounts_by_container: dict[str, list[Mount]]) -> _Container:
        mounts = list(mounts_by_container.get(spec.name, []))
        croot = pod.root / "containers" / spec.name
        if croot.exists():
            shutil.rmtree(croot)   # a stale sandbox of a previous start of this uid
        sandbox = ContainerSandbox(croot, mounts, self.binaries, self.mode, spec.env, spec.working_dir, pod.name)
        ctx = ContainerContext(pod.uid, pod.namespace, pod.name, spec, mounts, croot)
        argv = self.runner_for(spec.image).main_argv(ctx)
        (pod.root / "logs" / spec.name).mkdir(parents=True, exist_ok=True)
        return _Container(ctx, sandbox, argv)

    def _start_containers(self, pod: _Pod) -> None:
        with self._lock:
            if pod.stopping.is_set():
                return
            for c in pod.containers.values():
                if c.argv is None:
                    c.state = ContainerState(name=c.ctx.spec.name, state="running", started_at=time.time())
                else:
                    c.thread = threading.Thread(target=self._supervise, args=(pod, c), daemon=True,
                                                name=f"pod-{pod.name}-{c.ctx.spec.name}")
                    c.thread.start()

    def _initialize(self, pod: _Pod) -> None:
        """Init containers in order, each to success, then the main containers."""
        for c in pod.init_containers.values():
            if pod.stopping.is_set():
                return
            if c.argv is None:
                now = time.time()
                with self._lock:
                    c.state = ContainerState(name=c.ctx.spec.name, state="terminated", reason="Completed",
                                             exit_code=0, started_at=now, finished_at=now)
                self._changed(pod.uid)
                continue
            self._supervise(pod, c, init=True)
            if c.state.state != "terminated" or c.state.exit_code != 0:
                return   # stopped, or failed for good (restartPolicy Never)
        self._start_containers(pod)
        self._changed(pod.uid)

    def _spawn(self, pod: _Pod, c: _Container) -> subprocess.Popen[bytes]:
        assert c.argv is not None
        spec = c.sandbox.process_spec(c.argv, pid_namespace=True)
        log = self.log_path(pod.uid, c.ctx.spec.name)
        prev = log.with_name("previous.log")
        if log.exists():
            os.replace(log, prev)   # kubectl logs --previous
        with open(log, "wb") as out:
            return subprocess.Popen(spec.argv, env=spec.env, cwd=spec.cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def _supervise(self, pod: _Pod, c: _Container, init: bool = False) -> None:
        name = c.ctx.spec.name
        restarts = 0
        while not pod.stopping.is_set():
            try:
                proc = self._spawn(pod, c)
            except OSError as e:
                # Like a failed container create: terminated(StartError, 128).
                now = time.time()
                proc, code, started = None, 128, now
                msg: str | None = str(e)
            else:
                msg = None
                started = time.time()
                with self._lock:
                    c.proc = proc
                    c.state = ContainerState(name=name, state="running", started_at=started, pid=proc.pid,
                                             restart_count=restarts, last_terminated=c.state.last_terminated)
                if pod.stopping.is_set():
                    _signal(proc.pid, signal.SIGKILL, group=True)   # stop_pod ran while this one was spawning
                self._changed(pod.uid)
                code = proc.wait()
            finished = time.time()
            sig = -code if code < 0 else None
            exit_code = 128 + sig if sig else code
            reason = "StartError" if proc is None else ("Completed" if exit_code == 0 else "Error")
            term = ContainerState(name=name, state="terminated", reason=reason, message=msg, exit_code=exit_code,
                                  signal=sig, started_at=started, finished_at=finished, restart_count=restarts)
            if init:
                # An init container runs to completion; a failure is retried unless restartPolicy is Never.
                restart = not pod.stopping.is_set() and exit_code != 0 and pod.restart_policy != "Never"
            else:
                restart = not pod.stopping.is_set() and (
                    pod.restart_policy == "Always" or (pod.restart_policy == "OnFailure" and exit_code != 0))
            if not restart:
                with self._lock:
                    c.state = replace(term, last_terminated=c.state.last_terminated)
                    c.proc = None
                self._changed(pod.uid)
                return
            if finished - started >= 2 * self.backoff_max:
                backoff_n = 0   # a long healthy run resets the back-off, as the kubelet does
            else:
                backoff_n = restarts
            delay = 0.0 if backoff_n == 0 else min(self.backoff_base * 2 ** (backoff_n - 1), self.backoff_max)
            with self._lock:
                c.proc = None
                # restartCount while waiting = restarts done so far (kubelet semantics).
                c.state = ContainerState(
                    name=name, state="waiting", reason="CrashLoopBackOff" if delay else "ContainerCreating",
                    restart_count=restarts, last_terminated=term,
                    message=(f"back-off {_human(delay)} restarting failed container={name} "
                             f"pod={pod.name}_{pod.namespace}({pod.uid})") if delay else None)
            self._changed(pod.uid)
            if pod.stopping.wait(delay):
                return
            restarts += 1

    def shorten_stop(self, uid: str, grace_seconds: float) -> None:
        """A graceful stop in progress turns to SIGKILL within `grace_seconds` from now (if that is sooner)."""
        with self._lock:
            pod = self._pods.get(uid)
            if pod is not None:
                pod.stop_deadline = min(pod.stop_deadline, time.time() + grace_seconds)

    def stop_pod(self, uid: str, grace_seconds: float = 0) -> None:
        """SIGTERM every process of the pod (main processes and execs), SIGKILL after the grace."""
        with self._lock:
            pod = self._pods.get(uid)
        if pod is None:
            return
        with self._lock:
            pod.stopping.set()
            containers = [*pod.init_containers.values(), *pod.containers.values()]
            procs = [c.proc for c in containers if c.proc is not None]
            # execs end (and leave the set) while the pod stops: the loops below walk copies
            exec_sids = list(pod.exec_pids)
        groups = [p.pid for p in procs] + exec_sids
        if grace_seconds > 0:
            for p in procs:
                # Main processes run under `unshare -f`: signal the namespace's init, not unshare itself
                # (unshare dying would SIGKILL the child at once through --kill-child).
                for pid in _children(p.pid) or [p.pid]:
                    _signal(pid, signal.SIGTERM, group=False)
            for sid in exec_sids:
                for pid in _session_members(sid):
                    _signal(pid, signal.SIGTERM, group=False)
            with self._lock:
                pod.stop_deadline = min(pod.stop_deadline, time.time() + grace_seconds)
            for p in procs:
                # in short waits: a delete with a shorter grace period may bring the deadline forward
                while (left := pod.stop_deadline - time.time()) > 0:
                    try:
                        p.wait(timeout=min(left, 0.1))
                        break
                    except subprocess.TimeoutExpired:
                        pass
        for g in groups:
            _signal(g, signal.SIGKILL, group=True)
        for sid in list(pod.exec_pids):
            for pid in _session_members(sid):
                _signal(pid, signal.SIGKILL, group=False)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if pod.init_thread is not None:
            pod.init_thread.join(timeout=10)
        for c in containers:
            if c.thread is not None:
                c.thread.join(timeout=10)
            with self._lock:
                if c.state.reason == "PodInitializing":
                    continue   # never started: stays waiting, as on a node
                if c.state.state != "terminated":
                    now = time.time()
                    c.state = ContainerState(
                        name=c.ctx.spec.name, state="terminated", reason="Completed" if c.argv is None else "Error",
                        exit_code=0 if c.argv is None else 137, started_at=c.state.started_at, finished_at=now,
                        restart_count=c.state.restart_count, last_terminated=c.state.last_terminated)
        self._changed(uid)

    def remove_pod(self, uid: str) -> None:
        """Stop (if needed) and forget the pod; its sandbox and logs are deleted (volumes are not)."""
        self.stop_pod(uid)
        with self._lock:
            pod = self._pods.pop(uid, None)
        if pod is not None:
            shutil.rmtree(pod.root, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            uids = list(self._pods)
        for uid in uids:
            self.stop_pod(uid)

    # --- queries -------------------------------------------------------------------------------

    def container_states(self, uid: str) -> dict[str, ContainerState]:
        with self._lock:
            pod = self._pods.get(uid)
            return {} if pod is None else {n: c.state for n, c in pod.containers.items()}

    def init_container_states(self, uid: str) -> dict[str, ContainerState]:
        """The init containers' states, in their order."""
        with self._lock:
            pod = self._pods.get(uid)
            return {} if pod is None else {n: c.state for n, c in pod.init_containers.items()}

    def has_pod(self, uid: str) -> bool:
        with self._lock:
            return uid in self._pods

    def exec_spec(self, uid: str, container: str, argv: list[str]) -> ProcessSpec:
        """The wrapped process for `kubectl exec`; raises KeyError for an unknown pod/container."""
        with self._lock:
            pod = self._pods[uid]
            c = pod.containers.get(container) or pod.init_containers[container]
        spec = c.sandbox.process_spec(argv)
        spec.on_start = pod.exec_pids.add

        def on_exit(pid: int) -> None:
            # An exec'd command may leave background processes in its session (nohup cmd &): in a
            # real container they live until the container stops, so keep tracking the session.
            if not _session_members(pid):
                pod.exec_pids.discard(pid)

        spec.on_exit = on_exit
        return spec

    def log_path(self, uid: str, container: str, previous: bool = False) -> Path:
        d = self.data_dir / "pods" / uid / "logs" / container
        return d / ("previous.log" if previous else "current.log")

    def sandbox_dir(self, uid: str, container: str) -> Path:
        return self.data_dir / "pods" / uid / "containers" / container

    def _changed(self, uid: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(uid)
            except Exception:   # a controller bug must not kill a supervisor thread
                pass


def _session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (execs start a new session: sid == the exec's pid)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces): state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != b"Z":
            members.append(int(entry))
    return members


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _signal(pid: int, sig: int, *, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _human(seconds: float) -> str:
    # Go duration style, as in the kubelet's "back-off 40s restarting failed container" message.
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    s = int(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"
