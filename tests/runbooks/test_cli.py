"""`hcp-runbooks run etcd-backup`, `backups list`, `recover` and bad input, through the CLI."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app
from hcp.cluster_access import ClusterAccess


def _base(access: ClusterAccess) -> list[str]:
    return ["--kubeconfig", str(access.kubeconfig), "--context", "mgmt1"]


def test_run_etcd_backup_prints_the_report_and_backups_list_shows_it(prefect_server: Path, access: ClusterAccess,
                                                                      bucket: str) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(app, ["run", "etcd-backup", "--cluster", "clusters/demo", "--bucket", bucket,
                                      "--prefix", prefix, *_base(access)])
    assert result.exit_code == 0, result.output
    assert "etcd-backup of clusters/demo on mgmt1: succeeded" in result.output
    listing = CliRunner().invoke(app, ["backups", "list", "--bucket", bucket, "--prefix", prefix,
                                       "--cluster", "clusters/demo"])
    assert listing.exit_code == 0, listing.output
    assert "clusters/demo" in listing.output and "complete" in listing.output and "online" in listing.output


def test_dry_run_prints_the_plan(prefect_server: Path, access: ClusterAccess, bucket: str, s3: Any) -> None:
    prefix = f"cli-{uuid.uuid4().hex[:6]}"
    result = CliRunner().invoke(app, ["run", "etcd-backup", "--cluster", "clusters/demo", "--bucket", bucket,
                                      "--prefix", prefix, "--mode", "quiesced", "--dry-run", *_base(access)])
    assert result.exit_code == 0, result.output
    assert "planned" in result.output and "scale deployment/kube-apiserver --replicas=0" in result.output
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0


def test_failures_exit_non_zero_with_the_reason(prefect_server: Path, access: ClusterAccess, bucket: str) -> None:
    bad = CliRunner().invoke(app, ["run", "etcd-backup", "--cluster", "no-slash", "--bucket", bucket, *_base(access)])
    assert bad.exit_code == 2 and "NAMESPACE/NAME" in bad.output
    missing = CliRunner().invoke(app, ["run", "etcd-backup", "--cluster", "clusters/nope", "--bucket", bucket,
                                       *_base(access)])
    assert missing.exit_code == 1 and "not found" in missing.output
    nothing = CliRunner().invoke(app, ["recover", "op-20260101T000000Z-abcdef", *_base(access)])
    assert nothing.exit_code == 0 and "nothing to recover" in nothing.output
    unknown = CliRunner().invoke(app, ["backups", "list", "--bucket", "no-such-bucket-hcp"])
    assert unknown.exit_code == 1 and "no-such-bucket-hcp" in unknown.output


def test_run_etcd_restore_dry_run_and_bad_combinations(prefect_server: Path, access: ClusterAccess) -> None:
    plan = CliRunner().invoke(app, ["run", "etcd-restore", "--cluster", "clusters/demo", "--source", "snapshot",
                                    "--dry-run", *_base(access)])
    assert plan.exit_code == 0, plan.output
    assert "etcd-restore of clusters/demo on mgmt1: planned" in plan.output
    assert "restore into every member" in plan.output and "scale statefulset/etcd --replicas=0" in plan.output
    no_url = CliRunner().invoke(app, ["run", "etcd-restore", "--cluster", "clusters/demo", "--source", "backup",
                                      *_base(access)])
    assert no_url.exit_code == 2 and "needs `backup`" in no_url.output
    mixed = CliRunner().invoke(app, ["run", "etcd-restore", "--cluster", "clusters/demo", "--name", "x", *_base(access)])
    assert mixed.exit_code == 2 and "--into-new-cluster" in mixed.output


def test_run_etcd_member_recovery_on_a_healthy_cluster_changes_nothing(prefect_server: Path,
                                                                      access: ClusterAccess) -> None:
    result = CliRunner().invoke(app, ["run", "etcd-member-recovery", "--cluster", "clusters/demo", "--dry-run",
                                      *_base(access)])
    assert result.exit_code == 0, result.output
    assert "etcd-member-recovery of clusters/demo on mgmt1: planned" in result.output
    assert "etcd-0" in result.output and "healthy" in result.output
    bad = CliRunner().invoke(app, ["run", "etcd-member-recovery", "--cluster", "clusters/demo", "--member", "etcd-x",
                                   *_base(access)])
    assert bad.exit_code == 2, bad.output


def test_run_dr_migrate_dry_run_and_bad_input(prefect_server: Path, access: ClusterAccess, bucket: str, s3: Any,
                                              rb_world: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    prefix = f"cli-{uuid.uuid4().hex[:6]}"
    # the destination prepared as the README asks: the HostedCluster's namespace exists there
    dest = ClusterAccess(kubeconfig=access.kubeconfig, context="mgmt2").api_client()
    try:
        client.CoreV1Api(dest).create_namespace({"metadata": {"name": "clusters"}})
    except ApiException as exc:
        assert exc.status == 409
    finally:
        dest.close()
    common = ["run", "dr-migrate", "--cluster", "clusters/demo", "--bucket", bucket, "--prefix", prefix,
              "--source-kubeconfig", str(access.kubeconfig), "--destination-kubeconfig", str(access.kubeconfig),
              "--source-context", "mgmt1", "--route53-zone-id", rb_world.aws.zone_id,
              "--external-dns-domain", rb_world.settings.external_dns_domain]
    plan = CliRunner().invoke(app, [*common, "--destination-context", "mgmt2", "--dry-run"])
    assert plan.exit_code == 0, plan.output
    assert "dr-migrate of clusters/demo on mgmt1: planned" in plan.output
    assert "tear down the source" in plan.output and "restoreSnapshotURL" in plan.output
    assert s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0) == 0
    same = CliRunner().invoke(app, [*common, "--destination-context", "mgmt1"])
    assert same.exit_code == 2 and "another management cluster" in same.output
    rollback = CliRunner().invoke(app, [*common, "--destination-context", "mgmt2", "--rollback"])
    assert rollback.exit_code == 2 and "operation_id" in rollback.output


def test_a_run_here_sends_no_heartbeats_and_leaves_the_setting_as_it_was(prefect_server: Path) -> None:
    """cli.adhoc.run_here: the flow runs with heartbeats off (Prefect 3.9.1 joins its heartbeat thread at
    every run's end while it sleeps whole seconds); the caller's setting is back afterwards."""
    from prefect import flow
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    from cli.adhoc import run_here

    @flow(name="heartbeat-setting")
    def heartbeat_setting(params: int) -> int | None:
        return get_current_settings().flows.heartbeat_frequency

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):
        state = run_here(heartbeat_setting, 1)
        assert state.is_completed() and state.result() is None
        assert get_current_settings().flows.heartbeat_frequency == 180
