"""What every runbook gets: a retried flow run continues its operation; every change is an event."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_API_URL
from prefect.states import Scheduled

from deployments import register
from flows.etcd_backup import etcd_backup
from hcp import backup_catalog
from hcp.cluster_access import ClusterAccess


def test_retrying_the_same_flow_run_continues_its_operation(prefect_server: Path, rb_world: Any,
                                                           access: ClusterAccess, s3: Any, bucket: str) -> None:
    ids = register("hcp-test-pool")
    prefix = f"t-{uuid.uuid4().hex[:6]}"
    params = {"hosted_cluster": "clusters/demo", "bucket": bucket, "prefix": prefix,
              "management": access.model_dump(mode="json")}  # no operation_id: derived from the run
    with get_client(sync_client=True) as c:
        flow_run = c.create_flow_run_from_deployment(ids["etcd-backup"], parameters={"params": params})
    rb_world.aws.faults.fail_next(1000, 500, method="PUT", path=r"manifest\.json")
    state = run_flow(etcd_backup, flow_run=flow_run, return_type="state")
    rb_world.aws.faults.clear()
    assert state.is_failed()
    with get_client(sync_client=True) as c:  # what `prefect flow-run retry` and the UI's Retry do
        c.set_flow_run_state(flow_run.id, Scheduled(), force=True)
        retried = c.read_flow_run(flow_run.id)
    report = run_flow(etcd_backup, flow_run=retried)
    assert report.status == "succeeded", report.error
    outcomes = {s.name: s.outcome for s in report.steps}
    assert outcomes["snapshot-etcd"] == "resumed" and outcomes["upload-snapshot"] == "resumed"
    entries = backup_catalog.list_backups(s3, bucket, prefix)
    assert len(entries) == 1 and entries[0].complete
    assert entries[0].location.operation_id.endswith(str(flow_run.id).replace("-", "")[:6])


def test_every_change_is_an_event_on_the_hosted_cluster(prefect_server: Path, access: ClusterAccess,
                                                        bucket: str) -> None:
    from flows.etcd_backup import EtcdBackupParams
    p = EtcdBackupParams(hosted_cluster="clusters/demo", bucket=bucket, prefix=f"t-{uuid.uuid4().hex[:6]}",
                         management=access)
    report = etcd_backup(p)
    assert report.status == "succeeded"
    resource = "hcp.hosted-cluster.mgmt1.clusters.demo"
    wanted = {"hcp-runbooks.etcd-backup.started", "hcp-runbooks.etcd-backup.uploaded",
              "hcp-runbooks.etcd-backup.backup-written", "hcp-runbooks.etcd-backup.succeeded"}
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while not wanted <= seen and time.monotonic() < deadline:
        answer = httpx.post(f"{PREFECT_API_URL.value()}/events/filter", json={
            "filter": {"resource": {"id": [resource]}, "event": {"prefix": ["hcp-runbooks.etcd-backup."]},
                       "occurred": {"since": report.started_at.isoformat()}},
            "limit": 50})
        assert answer.status_code == 200, answer.text
        seen = {e["event"] for e in answer.json()["events"]
                if e["resource"].get("hcp.operation-id") == report.operation_id}
        time.sleep(1)
    assert wanted <= seen, seen
