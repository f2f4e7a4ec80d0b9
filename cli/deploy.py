"""`hcp-runbooks deploy`: register the runbooks with the Prefect server at PREFECT_API_URL."""

from __future__ import annotations

from pathlib import Path

import typer


def deploy_command(
    work_pool: str = typer.Option("hcp-runbooks", "--work-pool", help="a process work pool (created if missing)"),
    bucket: str = typer.Option(None, "--bucket", help="turns on the nightly fleet backup into this bucket"),
    kubeconfig: Path = typer.Option(None, "--kubeconfig", help="fleet backup: the management cluster's kubeconfig"),
    context: str = typer.Option(None, "--context", help="fleet backup: its context"),
    prefix: str = typer.Option("hcp-backups", "--prefix"),
    cron: str = typer.Option("0 2 * * *", "--cron", help="fleet backup schedule"),
    timezone: str = typer.Option("UTC", "--timezone"),
) -> None:
    """Create or update the deployments (etcd-backup, fleet-backup, recover) on the Prefect server."""
    from deployments import register
    from flows.fleet_backup import FleetBackupParams

    fleet = None
    if bucket:
        fleet = FleetBackupParams(bucket=bucket, prefix=prefix, management={"kubeconfig": kubeconfig, "context": context}
                                  ).model_dump(mode="json", exclude_defaults=True)
    try:
        ids = register(work_pool, fleet_parameters=fleet, cron=cron, timezone=timezone)
    except Exception as exc:
        typer.echo(f"error: could not register the deployments: {exc} (is PREFECT_API_URL set to a running "
                   "server? `prefect server start`)", err=True)
        raise typer.Exit(1) from None
    for name, deployment_id in ids.items():
        typer.echo(f"{name}: {deployment_id}")
    typer.echo(f"start a worker: prefect worker start --pool {work_pool}")
    if fleet is None:
        typer.echo("fleet-backup has no schedule: give --bucket (and --kubeconfig/--context) to run it nightly")
