"""The kubelet (and the bits of scheduler and volume binder it needs) of a simulated cluster.

It binds new pods to the cluster's node, resolves their volumes to directories (a PVC's directory
outlives the pod and dies with the PVC), starts them in the PodRuntime, keeps pod status in step
with the containers, and stops processes before a deleted pod goes away. It also serves the
HTTP layer's exec and log requests (hcpsim.apiserver.podio.PodIO).

A management cluster's volumes are zonal, as EBS volumes are on a multi-zone management cluster:
a StatefulSet's claim N lies in zone N mod 3 (HighlyAvailable etcd's members are required in
distinct zones by its podAntiAffinity on topology.kubernetes.io/zone), any other claim in the first.
One pod cannot mount volumes of two zones: it stays Pending, Unschedulable, with the scheduler's
"volume node affinity conflict".
"""

from __future__ import annotations

import base64
import logging
import queue
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Callable

from hcpsim.apiserver.backend import Backend, DeleteOptions
from hcpsim.apiserver.clock import now_rfc3339
from hcpsim.apiserver.errors import ApiError
from hcpsim.apiserver.resources import ResourceType
from hcpsim.apiserver.store import Event, copy_obj
from hcpsim.controllers import podnet
from hcpsim.runtime.pod_runtime import ContainerSpec, PodRuntime
from hcpsim.runtime.sandbox import Mount, ProcessSpec

log = logging.getLogger("hcpsim.kubelet")

PODS = ("", "pods")
PVCS = ("", "persistentvolumeclaims")
NODES = ("", "nodes")
PVC_PROTECTION = "kubernetes.io/pvc-protection"
VOLUME_ZONES = ("zone-a", "zone-b", "zone-c")


def claim_zone(claim: str, zones: tuple[str, ...]) -> str | None:
    """The zone of the volume bound to `claim` (None: volumes have no zone here)."""
    if not zones:
        return None
    ordinal = re.search(r"-(\d+)$", claim)
    return zones[int(ordinal.group(1)) % len(zones)] if ordinal else zones[0]


class Kubelet:
    def __init__(self, backend: Backend, runtime: PodRuntime, data_dir: Path, node_name: str,
                 *, max_grace_seconds: float = 2.0, own_node: bool = True,
                 volume_zones: tuple[str, ...] = ()) -> None:
        """`own_node`: create the Node `node_name` and run the pods bound to it (a management
        cluster). False: the cluster's Nodes come from elsewhere (a hosted cluster's NodePools);
        pods are bound round-robin to Ready nodes and run whatever node they are on."""
        self.backend = backend
        self.runtime = runtime
        self.runtime.on_change = self._on_runtime_change
        self.data_dir = Path(data_dir)
        self.node_name = node_name
        self.max_grace_seconds = max_grace_seconds
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._started: dict[str, tuple[str, str]] = {}  # pod uid -> (namespace, name)
        self._stopping = threading.Event()
        self.own_node = own_node
        self.volume_zones = volume_zones
        # What may keep a scheduled pod from getting its sandbox (its network): pod -> reason or
        # None. The pod waits in ContainerCreating; `resync()` tries again.
        self.sandbox_gate: Callable[[dict], str | None] | None = None
        self._next_node = 0
        self._thread = threading.Thread(target=self._loop, name=f"kubelet-{node_name}", daemon=True)
        if own_node:
            self._ensure_node()
        backend.graceful_delete_hooks[PODS] = self._graceful_delete
        self._unsubscribe = backend.store.subscribe(self._on_event)
        self._thread.start()
        # Pods and claims that existed before the kubelet started.
        for pod in backend.store.items(PODS):
            self._queue.put(("pod", (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])))
        for pvc in backend.store.items(PVCS):
            self._queue.put(("pvc", (pvc["metadata"]["namespace"], pvc["metadata"]["name"])))

    # PodIO for the HTTP layer.

    def exec_spec(self, pod: dict, container: str, argv: list[str]) -> ProcessSpec:
        uid = pod["metadata"]["uid"]
        if not self.runtime.has_pod(uid):
            raise ApiError.bad_request(f"unable to upgrade connection: container not found (\"{container}\")")
        try:
            return self.runtime.exec_spec(uid, container, argv)
        except KeyError:
            raise ApiError.bad_request(f"unable to upgrade connection: container not found (\"{container}\")") from None

    def log_path(self, pod: dict, container: str, previous: bool = False) -> Path | None:
        uid = pod["metadata"]["uid"]
        return self.runtime.log_path(uid, container, previous) if self.runtime.has_pod(uid) else None

    def pvc_dir(self, namespace: str, claim: str) -> Path:
        return self.data_dir / "pvcs" / namespace / claim

    def resync(self, node: str | None = None) -> None:
        """Look again at the pods (bound to `node`) that have not started."""
        for pod in self.backend.store.items(PODS):
            if node is None or (pod.get("spec") or {}).get("nodeName") == node:
                if pod["metadata"]["uid"] not in self._started:
                    self._queue.put(("pod", (pod["metadata"]["namespace"], pod["metadata"]["name"])))

    def close(self) -> None:
        self._stopping.set()
        self._unsubscribe()
        self._queue.put(("stop", None))
        self._thread.join(timeout=5)
        self.runtime.close()

    # Events from the store arrive under its lock: queue them, work in the kubelet thread.

    def _on_event(self, event: Event) -> None:
        if event.key == PODS:
            self._queue.put(("pod", (event.namespace, event.name)) if event.type != "DELETED"
                            else ("pod-deleted", event.obj["metadata"]["uid"]))
        elif event.key == NODES and not self.own_node and event.type != "DELETED":
            # A node became Ready: pending pods may be scheduled now.
            for pod in self.backend.store.items(PODS):
                if not (pod.get("spec") or {}).get("nodeName"):
                    self._queue.put(("pod", (pod["metadata"]["namespace"], pod["metadata"]["name"])))
        elif event.key == ("", "services"):
            self._queue.put(("hosts", event.namespace))
        elif event.key == PVCS:
            self._queue.put(("pvc", (event.namespace, event.name)) if event.type != "DELETED"
                            else ("pvc-deleted", (event.namespace, event.name)))

    def _on_runtime_change(self, uid: str) -> None:
        where = self._started.get(uid)
        if where:
            self._queue.put(("status", where))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            kind, arg = self._queue.get()
            if kind == "stop":
                return
            try:
                if kind in ("pod", "status"):
                    self._sync_pod(*arg)
                elif kind == "pod-deleted":
                    self._forget_pod(arg)
                elif kind == "hosts":
                    self._refresh_hosts(arg)
                elif kind == "pvc":
                    self._sync_pvc(*arg)
                elif kind == "pvc-deleted":
                    shutil.rmtree(self.pvc_dir(*arg), ignore_errors=True)
            except ApiError as e:
                if e.code not in (404, 409):
                    log.warning("kubelet %s: %s %s: %s", self.node_name, kind, arg, e.message)
            except Exception:
                log.exception("kubelet %s: %s %s failed", self.node_name, kind, arg)

    # Pods.

    def _pods_type(self) -> ResourceType:
        return self.backend.type_for(*PODS)

    def _sync_pod(self, namespace: str, name: str) -> None:
        pod = self.backend.store.get(PODS, namespace, name)
        if pod is None:
            return
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            return
        spec = pod.get("spec") or {}
        if not spec.get("nodeName"):
            self._bind(pod)
            return
        if spec["nodeName"] != self.node_name and (self.own_node or self.backend.store.get(NODES, "", spec["nodeName"]) is None):
            return
        if uid not in self._started:
            gate = self.sandbox_gate
            problem = gate(pod) if gate is not None and not spec.get("hostNetwork") else None
            if problem:
                self._write_status(pod, sandbox_problem=problem)
                return
            mounts, problem = self._resolve_mounts(pod)
            if problem:
                self._write_status(pod, pending_reason=problem)
                return
            pod = self._assign_ip(pod)
            env, problem = self._resolve_env(pod)
            if problem:
                self._write_status(pod, pending_reason=problem)
                return
            hosts = self._hosts_path(uid)
            self._refresh_hosts(namespace, also=pod)
            resolv = self._resolv_conf()
            for entries in mounts.values():
                entries.append(Mount("/etc/hosts", hosts))
                entries.append(Mount("/etc/resolv.conf", resolv))
            containers = [_container_spec(c, env[c["name"]]) for c in spec.get("containers", [])]
            inits = [_container_spec(c, env[c["name"]]) for c in spec.get("initContainers") or []]
            self.runtime.start_pod(uid, namespace, name, containers, mounts, restart_policy=spec.get("restartPolicy", "Always"),
                                   init_containers=inits)
            self._started[uid] = (namespace, name)
        self._write_status(self.backend.store.get(PODS, namespace, name) or pod)

    def _assign_ip(self, pod: dict) -> dict:
        meta = pod["metadata"]
        if (pod.get("status") or {}).get("podIP"):
            return pod
        updated = copy_obj(pod)
        ip = podnet.pod_ip(str(self.data_dir), meta["namespace"], meta["name"])
        updated.setdefault("status", {}).update(podIP=ip, podIPs=[{"ip": ip}])
        return self.backend.update(self._pods_type(), meta["namespace"], meta["name"], updated, subresource="status")

    def _resolv_conf(self) -> Path:
        """Pods resolve names from their /etc/hosts only: an unknown name fails at once on loopback
        instead of waiting on (and sending traffic to) the machine's real DNS servers."""
        path = self.data_dir / "resolv.conf"
        if not path.exists():
            path.write_text("# hcpsim: cluster names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        return path

    def _hosts_path(self, uid: str) -> Path:
        return self.data_dir / "pods" / uid / "etc-hosts"

    def _refresh_hosts(self, namespace: str, also: dict | None = None) -> None:
        """Rewrite the /etc/hosts of the namespace's started pods (names follow pods and services)."""
        pods = self.backend.store.items(PODS, namespace)
        if also is not None and all(p["metadata"]["uid"] != also["metadata"]["uid"] for p in pods):
            pods = pods + [also]
        services = self.backend.store.items(("", "services"), namespace)
        statefulsets = self.backend.store.items(("apps", "statefulsets"), namespace)
        claims = [c["metadata"]["name"] for c in self.backend.store.items(PVCS, namespace)]

        def ip_for(member: str) -> str:
            return podnet.pod_ip(str(self.data_dir), namespace, member)

        for pod in pods:
            uid = pod["metadata"]["uid"]
            if uid in self._started or (also is not None and uid == also["metadata"]["uid"]):
                content = podnet.hosts_file_content(pod, pods, services, statefulsets, claims, ip_for)
                podnet.write_in_place(self._hosts_path(uid), content)

    def _resolve_env(self, pod: dict) -> tuple[dict[str, dict[str, str]], str | None]:
        """Each container's environment with valueFrom (downward API, secrets, config maps) resolved."""
        meta = pod["metadata"]
        ns = meta["namespace"]
        out: dict[str, dict[str, str]] = {}
        for c in _all_containers(pod):
            env: dict[str, str] = {}
            for source in c.get("envFrom") or []:
                ref = source.get("configMapRef") or source.get("secretRef")
                key = ("", "configmaps") if "configMapRef" in source else ("", "secrets")
                obj = self.backend.store.get(key, ns, (ref or {}).get("name", ""))
                if obj is None:
                    if not (ref or {}).get("optional"):
                        return {}, f'{key[1][:-1]} "{(ref or {}).get("name")}" not found'
                    continue
                for k, v in (obj.get("data") or {}).items():
                    env[source.get("prefix", "") + k] = base64.b64decode(v).decode() if key[1] == "secrets" else v
            for e in c.get("env") or []:
                if "valueFrom" not in e:
                    env[e["name"]] = _expand(str(e.get("value", "")), env)
                    continue
                vf = e["valueFrom"]
                if "fieldRef" in vf:
                    env[e["name"]] = _field_ref(pod, vf["fieldRef"]["fieldPath"], self.node_name)
                elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
                    ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef")
                    key = ("", "secrets") if "secretKeyRef" in vf else ("", "configmaps")
                    obj = self.backend.store.get(key, ns, ref.get("name", ""))
                    data = (obj or {}).get("data") or {}
                    if ref.get("key") not in data:
                        if ref.get("optional"):
                            continue
                        return {}, f'couldn\'t find key {ref.get("key")} in {key[1][:-1]} {ns}/{ref.get("name")}'
                    value = data[ref["key"]]
                    env[e["name"]] = base64.b64decode(value).decode() if key[1] == "secrets" else value
            out[c["name"]] = env
        return out, None

    def _bind(self, pod: dict) -> None:
        # The scheduler's part: one node per simulated cluster takes every pod.
        node = self.node_name
        zones = {claim_zone(v["persistentVolumeClaim"]["claimName"], self.volume_zones)
                 for v in (pod.get("spec") or {}).get("volumes") or [] if "persistentVolumeClaim" in v}
        if len(zones) > 1:
            n = len(self.volume_zones)
            self._write_status(pod, pending_reason=f"0/{n} nodes are available: {n} node(s) had volume node affinity "
                                                   "conflict. (its claims' volumes lie in zones "
                                                   f"{', '.join(sorted(z for z in zones if z))})")
            return
        if not self.own_node:
            ready = [n["metadata"]["name"] for n in self.backend.store.items(NODES) if _node_ready(n) and _schedulable(n)]
            if not ready:
                return  # stays Pending until a node is Ready, as with a real scheduler
            self._next_node += 1
            node = ready[self._next_node % len(ready)]
        updated = copy_obj(pod)
        updated["spec"]["nodeName"] = node
        meta = updated["metadata"]
        self.backend.update(self._pods_type(), meta["namespace"], meta["name"], updated)

    def _resolve_mounts(self, pod: dict) -> tuple[dict[str, list[Mount]], str | None]:
        namespace = pod["metadata"]["namespace"]
        uid = pod["metadata"]["uid"]
        volumes: dict[str, Path] = {}
        for volume in (pod.get("spec") or {}).get("volumes", []):
            vname = volume["name"]
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                pvc = self.backend.store.get(PVCS, namespace, claim)
                if pvc is None:
                    return {}, f'persistentvolumeclaim "{claim}" not found'
                if pvc["metadata"].get("deletionTimestamp"):
                    return {}, f'persistentvolumeclaim "{claim}" is being deleted'
                path = self.pvc_dir(namespace, claim)
            elif "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
            else:
                path = self.data_dir / "pods" / uid / "volumes" / vname
                path.mkdir(parents=True, exist_ok=True)
                if "secret" in volume:
                    self._project(path, ("", "secrets"), namespace, volume["secret"].get("secretName", ""), "data", volume["secret"])
                elif "configMap" in volume:
                    self._project(path, ("", "configmaps"), namespace, volume["configMap"].get("name", ""), "data", volume["configMap"])
            path.mkdir(parents=True, exist_ok=True)
            volumes[vname] = path
        mounts: dict[str, list[Mount]] = {}
        for container in _all_containers(pod):
            entries = []
            for vm in container.get("volumeMounts", []):
                if vm["name"] not in volumes:
                    return {}, f'volume "{vm["name"]}" of container "{container["name"]}" is not defined'
                host = volumes[vm["name"]]
                if vm.get("subPath"):
                    host = host / vm["subPath"]
                    host.mkdir(parents=True, exist_ok=True)
                entries.append(Mount(vm["mountPath"], host, bool(vm.get("readOnly"))))
            mounts[container["name"]] = entries
        return mounts, None

    def _project(self, path: Path, key: tuple[str, str], namespace: str, name: str, field: str, source: dict) -> None:
        obj = self.backend.store.get(key, namespace, name)
        if obj is None:
            return
        items = source.get("items")
        entries = obj.get(field) or {}
        binary = obj.get("binaryData") or {}
        selected = {i["key"]: i.get("path", i["key"]) for i in items} if items else {k: k for k in list(entries) + list(binary)}
        for k, rel in selected.items():
            target = path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if key == ("", "secrets"):
                target.write_bytes(base64.b64decode(entries.get(k, "")))
            elif k in binary:
                target.write_bytes(base64.b64decode(binary[k]))
            else:
                target.write_text(entries.get(k, ""))

    def _write_status(self, pod: dict, pending_reason: str | None = None, sandbox_problem: str | None = None) -> None:
        meta = pod["metadata"]
        status = copy_obj(pod.get("status") or {})
        now = now_rfc3339()
        if sandbox_problem:
            # Scheduled, but the runtime cannot create the sandbox: containers wait in
            # ContainerCreating (the kubelet reports FailedCreatePodSandBox and retries).
            old_conditions = {c["type"]: c for c in status.get("conditions", [])}

            def since(ctype: str, value: str) -> str:
                previous = old_conditions.get(ctype)
                return previous["lastTransitionTime"] if previous and previous["status"] == value else now

            status.update(
                phase="Pending", hostIP="127.0.0.1", hostIPs=[{"ip": "127.0.0.1"}], startTime=status.get("startTime", now),
                qosClass=status.get("qosClass", "BestEffort"),
                containerStatuses=[{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
                                    "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating", "message": sandbox_problem}}}
                                   for c in pod["spec"].get("containers", [])],
                conditions=[{"type": t, "status": v, "lastProbeTime": None, "lastTransitionTime": since(t, v)} for t, v in (
                    ("PodReadyToStartContainers", "False"), ("Initialized", "True"), ("Ready", "False"),
                    ("ContainersReady", "False"), ("PodScheduled", "True"))],
            )
        elif pending_reason:
            # lastTransitionTime moves on: the status write is the event that makes this pod be looked
            # at again (a claim it waits for being re-created says nothing to the pod)
            status.update(phase="Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                        "message": pending_reason, "lastTransitionTime": now}])
        else:
            states = self.runtime.container_states(meta["uid"])
            init_states = self.runtime.init_container_states(meta["uid"])
            statuses = []
            all_ready = True
            for c in pod["spec"].get("containers", []):
                st = states.get(c["name"])
                running = st is not None and st.state == "running"
                all_ready = all_ready and running
                statuses.append(_container_status(meta["uid"], c, st, ready=running))
            init_statuses = []
            for c in pod["spec"].get("initContainers") or []:
                st = init_states.get(c["name"])
                done = st is not None and st.state == "terminated" and st.exit_code == 0
                init_statuses.append(_container_status(meta["uid"], c, st, ready=done))
            initialized = all(s["ready"] for s in init_statuses)
            terminated = [s for s in states.values() if s.state == "terminated"]
            phase = "Running"
            if not initialized:
                # Pending until every init container succeeded; Failed if one failed for good.
                failed = pod["spec"].get("restartPolicy") == "Never" and any(
                    s.state == "terminated" and s.exit_code != 0 for s in init_states.values())
                phase = "Failed" if failed else "Pending"
            elif terminated and len(terminated) == len(states) and pod["spec"].get("restartPolicy") != "Always":
                phase = "Succeeded" if all(s.exit_code == 0 for s in terminated) else "Failed"
            ready = "True" if all_ready and phase == "Running" else "False"
            old_conditions = {c["type"]: c for c in status.get("conditions", [])}

            def condition(ctype: str, value: str) -> dict[str, Any]:
                previous = old_conditions.get(ctype)
                since = previous["lastTransitionTime"] if previous and previous["status"] == value else now
                return {"type": ctype, "status": value, "lastProbeTime": None, "lastTransitionTime": since}

            status.update(
                phase=phase, hostIP="127.0.0.1", hostIPs=[{"ip": "127.0.0.1"}], startTime=status.get("startTime", now),
                qosClass=status.get("qosClass", "BestEffort"), containerStatuses=statuses,
                conditions=[condition("PodReadyToStartContainers", "True"), condition("Initialized", "True" if initialized else "False"),
                            condition("Ready", ready), condition("ContainersReady", ready), condition("PodScheduled", "True")],
            )
            if init_statuses:
                status["initContainerStatuses"] = init_statuses
            else:
                status.pop("initContainerStatuses", None)
        if status == pod.get("status"):
            return
        updated = copy_obj(pod)
        updated["status"] = status
        self.backend.update(self._pods_type(), meta["namespace"], meta["name"], updated, subresource="status")

    def _graceful_delete(self, rt: ResourceType, pod: dict, options: DeleteOptions) -> bool:
        """A running pod is stopped first (SIGTERM, then SIGKILL after the grace period), then removed.
        A pod already terminating stays, as with a real API server: a delete with a shorter grace period
        brings its SIGKILL forward (`kubectl delete --grace-period=1` on a pod that hangs in its stop);
        grace period 0 removes it at once (a force delete)."""
        uid = pod["metadata"]["uid"]
        if uid not in self._started or options.grace_period_seconds == 0:
            return False
        grace = options.grace_period_seconds
        if pod["metadata"].get("deletionTimestamp"):
            current = pod["metadata"].get("deletionGracePeriodSeconds")
            if grace is not None and (current is None or grace < current):
                updated = copy_obj(pod)
                updated["metadata"]["deletionGracePeriodSeconds"] = grace
                self.backend.store.put(PODS, updated, "MODIFIED")
                self.runtime.shorten_stop(uid, min(float(grace), self.max_grace_seconds))
            return True
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        updated = copy_obj(pod)
        updated["metadata"]["deletionTimestamp"] = now_rfc3339()
        updated["metadata"]["deletionGracePeriodSeconds"] = grace
        self.backend.store.put(PODS, updated, "MODIFIED")
        threading.Thread(target=self._finish_delete, args=(pod["metadata"]["namespace"], pod["metadata"]["name"], uid,
                                                           min(float(grace), self.max_grace_seconds)), daemon=True).start()
        return True

    def _finish_delete(self, namespace: str, name: str, uid: str, grace: float) -> None:
        self.runtime.stop_pod(uid, grace_seconds=grace)
        current = self.backend.store.get(PODS, namespace, name)
        if current is not None and current["metadata"]["uid"] == uid:
            try:
                self.backend.delete(self._pods_type(), namespace, name,
                                    DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}))
            except ApiError:
                pass

    def _forget_pod(self, uid: str) -> None:
        where = self._started.pop(uid, None)
        if where is not None:
            self.runtime.stop_pod(uid, grace_seconds=0)
            self.runtime.remove_pod(uid)
            self._refresh_hosts(where[0])
        self._release_claims()

    # Persistent volume claims (the volume binder and the pvc-protection controller).

    def _sync_pvc(self, namespace: str, name: str) -> None:
        pvc = self.backend.store.get(PVCS, namespace, name)
        if pvc is None:
            return
        rt = self.backend.type_for(*PVCS)
        meta = pvc["metadata"]
        if meta.get("deletionTimestamp"):
            self._release_claims()
            return
        if PVC_PROTECTION not in (meta.get("finalizers") or []):
            updated = copy_obj(pvc)
            updated["metadata"]["finalizers"] = list(meta.get("finalizers") or []) + [PVC_PROTECTION]
            self.backend.update(rt, namespace, name, updated)
            return
        if (pvc.get("status") or {}).get("phase") != "Bound":
            self.pvc_dir(namespace, name).mkdir(parents=True, exist_ok=True)
            updated = copy_obj(pvc)
            updated["spec"].setdefault("volumeName", f"pvc-{meta['uid']}")
            self.backend.update(rt, namespace, name, updated)
            updated = copy_obj(self.backend.store.get(PVCS, namespace, name))
            updated["status"] = {
                "phase": "Bound", "accessModes": pvc["spec"].get("accessModes", []),
                "capacity": {"storage": ((pvc["spec"].get("resources") or {}).get("requests") or {}).get("storage", "1Gi")},
            }
            self.backend.update(rt, namespace, name, updated, subresource="status")

    def _release_claims(self) -> None:
        """Claims being deleted lose their protection once no pod uses them."""
        rt = self.backend.type_for(*PVCS)
        in_use = set()
        for pod in self.backend.store.items(PODS):
            for volume in (pod.get("spec") or {}).get("volumes", []):
                if "persistentVolumeClaim" in volume and pod["metadata"]["uid"] in self._started:
                    in_use.add((pod["metadata"]["namespace"], volume["persistentVolumeClaim"]["claimName"]))
        for pvc in self.backend.store.items(PVCS):
            meta = pvc["metadata"]
            key = (meta["namespace"], meta["name"])
            if meta.get("deletionTimestamp") and PVC_PROTECTION in (meta.get("finalizers") or []) and key not in in_use:
                updated = copy_obj(pvc)
                updated["metadata"]["finalizers"] = [f for f in meta["finalizers"] if f != PVC_PROTECTION]
                try:
                    self.backend.update(rt, key[0], key[1], updated)
                except ApiError:
                    pass

    # The node.

    def _ensure_node(self) -> None:
        rt = self.backend.type_for(*NODES)
        if self.backend.store.get(NODES, "", self.node_name) is not None:
            return
        self.backend.create(rt, None, {"metadata": {"name": self.node_name, "labels": {
            "kubernetes.io/hostname": self.node_name, "node-role.kubernetes.io/worker": "", "kubernetes.io/os": "linux"}}})
        node = copy_obj(self.backend.store.get(NODES, "", self.node_name))
        now = now_rfc3339()
        node["status"] = {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node_name}],
            "capacity": {"cpu": "16", "memory": "64Gi", "pods": "250"},
            "allocatable": {"cpu": "16", "memory": "64Gi", "pods": "250"},
            "nodeInfo": {"kubeletVersion": "v1.31.4", "containerRuntimeVersion": "cri-o://1.31.0", "operatingSystem": "linux",
                         "architecture": "amd64"},
        }
        self.backend.update(rt, None, self.node_name, node, subresource="status")


def _node_ready(node: dict) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _schedulable(node: dict) -> bool:
    """Not cordoned and no NoSchedule/NoExecute taint (pods here carry no tolerations)."""
    spec = node.get("spec") or {}
    if spec.get("unschedulable"):
        return False
    return not any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or [])


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known variables are replaced, $$ escapes, unknown ones stay."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2:end]
            out.append(env.get(name, text[i:end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _field_ref(pod: dict, path: str, node_name: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
        "spec.nodeName": node_name, "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": (pod.get("status") or {}).get("podIP", ""), "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    for prefix, field in (("metadata.labels['", "labels"), ("metadata.annotations['", "annotations")):
        if path.startswith(prefix):
            return (meta.get(field) or {}).get(path[len(prefix):-2], "")
    return ""


def _all_containers(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def _container_status(uid: str, c: dict, st: Any, *, ready: bool) -> dict[str, Any]:
    """One entry of containerStatuses / initContainerStatuses from the runtime's ContainerState."""
    return {
        "name": c["name"], "image": c.get("image", ""), "imageID": c.get("image", ""),
        "ready": ready, "started": st is not None and st.state == "running", "restartCount": st.restart_count if st else 0,
        "state": st.k8s_state() if st else {"waiting": {"reason": "ContainerCreating"}},
        "lastState": st.k8s_last_state() if st else {},
        "containerID": f"cri-o://{uid}-{c['name']}",
    }


def _container_spec(container: dict, env: dict[str, str]) -> ContainerSpec:
    spec = ContainerSpec.from_k8s(container)
    spec.env = env
    spec.command = [_expand(a, env) for a in spec.command]
    spec.args = [_expand(a, env) for a in spec.args]
    return spec
