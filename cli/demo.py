"""The README's main job: an etcd backup of the simulated hosted cluster, end to end.

Starts the embedded world (management clusters, a HighlyAvailable hosted cluster with three real
etcd members, S3 on loopback), points the standard AWS configuration at it, runs the etcd-backup
runbook with full verification, and prints its report and the bucket's backups."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

Echo = Callable[[str], None]


def _export_aws_env(path: Path) -> None:
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            os.environ[key.removeprefix("export ").strip()] = value.strip().strip('"')


def run_demo(data_dir: Path, echo: Echo = print) -> bool:
    from cli.adhoc import run_here
    from flows.etcd_backup import EtcdBackupParams, etcd_backup
    from hcp.aws_access import AwsAccess
    from hcp.backup_catalog import format_table, list_backups
    from hcp.cluster_access import ClusterAccess
    from hcpsim.world import World, WorldSettings

    t0 = time.monotonic()
    with World(data_dir, WorldSettings()) as world:
        world.wait_available(timeout=120)
        echo(f"simulated world up in {time.monotonic() - t0:.1f}s: management clusters mgmt1 and mgmt2, hosted cluster "
             "clusters/demo (3 etcd members), S3 and Route53 on loopback")
        echo(f"  kubeconfig: {world.kubeconfig_path}   aws env: {world.aws_env_path}")
        _export_aws_env(world.aws_env_path)
        params = EtcdBackupParams(hosted_cluster="clusters/demo", bucket=world.settings.bucket, verify="full",
                                  management=ClusterAccess(kubeconfig=world.kubeconfig_path, context="mgmt1"))
        echo("running the etcd-backup runbook (online, verify: full) ...")
        state = run_here(etcd_backup, params)
        if state.is_completed():
            echo(state.result().to_markdown())
        else:
            echo(f"etcd-backup FAILED: {state.message}")
        echo(f"`hcp-runbooks backups list --bucket {world.settings.bucket}`:")
        echo(format_table(list_backups(AwsAccess().s3_client(), world.settings.bucket, params.prefix)))
    echo(f"main job done in {time.monotonic() - t0:.1f}s; everything it started is stopped")
    return state.is_completed()
