"""The runbooks as Prefect deployments: registration, the nightly schedule, a REST trigger, and an
approval gate that suspends a deployment run (no process held) until someone approves."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx
from kubernetes import client
from prefect.client.orchestration import get_client
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from cli.main import app
from deployments import RUNBOOKS, register
from flows.etcd_backup import etcd_backup
from hcp.cluster_access import ClusterAccess
from hcp.lease_lock import LeaseLock
from hcp.naming import HostedClusterRef
from tests.runbooks.children import latest_report
from tests.runbooks.test_etcd_backup import _objects, _replicas


def _fleet(access: ClusterAccess, bucket: str) -> dict[str, Any]:
    return {"bucket": bucket, "management": access.model_dump(mode="json")}


def test_register_declares_every_runbook_with_forms_and_the_nightly_fleet_schedule(
        prefect_server: Path, access: ClusterAccess, bucket: str) -> None:
    ids = register("hcp-test-pool", fleet_parameters=_fleet(access, bucket))
    assert set(ids) == {r.name for r in RUNBOOKS}
    assert {"etcd-backup", "fleet-backup", "recover", "etcd-restore", "etcd-restore-new-cluster"} <= set(ids)
    with get_client(sync_client=True) as c:
        backup = c.read_deployment(ids["etcd-backup"])
        fleet = c.read_deployment(ids["fleet-backup"])
        pool = c.read_work_pool("hcp-test-pool")
    assert pool.type == "process"
    schema = backup.parameter_openapi_schema
    assert "params" in schema["properties"]
    definitions = schema.get("definitions") or schema.get("$defs") or {}
    assert {"hosted_cluster", "bucket", "mode", "dry_run"} <= set(definitions["EtcdBackupParams"]["properties"])
    assert [s.schedule.cron for s in fleet.schedules] == ["0 2 * * *"]
    assert fleet.parameters["params"]["bucket"] == bucket
    assert not backup.schedules


def test_rest_trigger_is_idempotent_per_operation(prefect_server: Path, access: ClusterAccess, bucket: str) -> None:
    ids = register("hcp-test-pool")
    body = {"parameters": {"params": {"hosted_cluster": "clusters/demo", "bucket": bucket, "dry_run": True,
                                      "management": access.model_dump(mode="json")}},
            "idempotency_key": f"incident-{uuid.uuid4().hex[:6]}"}
    url = f"{PREFECT_API_URL.value()}/deployments/{ids['etcd-backup']}/create_flow_run"
    first = httpx.post(url, json=body, timeout=30)
    assert first.status_code in (200, 201), first.text
    # the same request again, retried on a server error as incident tooling would (the test server's
    # SQLite once answered the immediate second request with an error on a loaded 2-core CI machine)
    for _ in range(5):
        second = httpx.post(url, json=body, timeout=30)
        if second.status_code < 500:
            break
        time.sleep(1)
    assert second.status_code in (200, 201), second.text
    assert first.json()["id"] == second.json()["id"]


def test_a_deployment_run_suspends_at_the_gate_and_resumes_after_approve(
        prefect_server: Path, mgmt: client.ApiClient, access: ClusterAccess, s3: Any, bucket: str,
        new_cluster: Callable[[], str]) -> None:
    cluster = new_cluster()
    ref = HostedClusterRef.parse(cluster)
    before = _replicas(mgmt, cluster)
    ids = register("hcp-test-pool")
    prefix = f"t-{uuid.uuid4().hex[:6]}"
    params = {"hosted_cluster": cluster, "bucket": bucket, "prefix": prefix, "mode": "quiesced",
              "management": access.model_dump(mode="json"), "approval": {"timeout_seconds": 600}}
    with get_client(sync_client=True) as c:
        flow_run = c.create_flow_run_from_deployment(ids["etcd-backup"], parameters={"params": params})
    try:  # what a worker does; the run suspends and the process is free to exit
        run_flow(etcd_backup, flow_run=flow_run)
    except Pause:
        pass
    with get_client(sync_client=True) as c:
        suspended = c.read_flow_run(flow_run.id)
    assert suspended.state.is_paused() and suspended.state.name == "Suspended"
    assert _replicas(mgmt, cluster) == before  # nothing lowered before the approval
    lease = LeaseLock.for_hosted_cluster(mgmt, ref.namespace, ref.name, "x").get()
    assert lease.holder and lease.duration_seconds >= 600  # held across the wait, without a process renewing it

    result = CliRunner().invoke(app, ["approve", str(flow_run.id), "--approver", "frank", "--comment", "CHG-1"])
    assert result.exit_code == 0, result.output
    with get_client(sync_client=True) as c:
        resumed = c.read_flow_run(flow_run.id)
    report = run_flow(etcd_backup, flow_run=resumed)  # the worker picks the resumed run up again
    assert report.status == "succeeded", report.error
    assert any("approved by frank (CHG-1)" in a for a in report.approvals)
    assert _replicas(mgmt, cluster) == before
    assert any(k.endswith("manifest.json") for k in _objects(s3, bucket, prefix))
    assert "approved by frank" in latest_report("etcd-backup", cluster)
