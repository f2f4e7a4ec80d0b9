"""The `hcp-runbooks` command."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import typer

from cli.deploy import deploy_command
from cli.runbooks import approve_command, backups_app, recover_command, run_app

app = typer.Typer(help="Runbook automation for OpenShift hosted control planes (HyperShift).", no_args_is_help=True)
sim_app = typer.Typer(help="The embedded simulator of HyperShift management clusters.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
app.add_typer(run_app, name="run")
app.add_typer(backups_app, name="backups")
app.command("approve")(approve_command)
app.command("recover")(recover_command)
app.command("deploy")(deploy_command)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo("hcp-runbooks 0.1.0")


@app.command()
def demo(
    data_dir: Path = typer.Option(None, "--dir", help="Where the simulator keeps its files (default: a temporary directory)."),
) -> None:
    """The main job on the embedded simulator: an etcd backup of a simulated hosted cluster, end to end."""
    from cli.demo import run_demo

    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="hcp-demo-") as tmp:
            ok = run_demo(Path(tmp), typer.echo)
    else:
        ok = run_demo(data_dir, typer.echo)
    if not ok:
        raise typer.Exit(1)


@sim_app.command("smoke")
def sim_smoke(
    data_dir: Path = typer.Option(None, "--dir", help="Where the simulator keeps its files (default: a temporary directory)."),
) -> None:
    """A tour of the simulated world (etcd health, keys, DNS records, hosted nodes, kubectl views)."""
    from hcpsim.demo import run_smoke  # the demo wires the simulator in; product code never imports it

    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="hcp-smoke-") as tmp:
            run_smoke(Path(tmp), typer.echo)
    else:
        run_smoke(data_dir, typer.echo)


@sim_app.command("up")
def sim_up(
    data_dir: Path = typer.Option(..., "--dir", help="Directory for the kubeconfig, aws.env and the clusters' data."),
    hosted_clusters: int = typer.Option(1, "--hosted-clusters", min=0, help="Hosted clusters to create on mgmt1."),
    availability: str = typer.Option("HighlyAvailable", "--availability",
                                      help="HighlyAvailable (3 etcd members) or SingleReplica (1)."),
    realistic: bool = typer.Option(False, "--realistic", help="Delays of the order the real system has (demos, rehearsals)."),
) -> None:
    """Run the simulated HyperShift world in the foreground until Ctrl-C or SIGTERM."""
    from hcpsim.world import World, WorldSettings

    if availability not in ("HighlyAvailable", "SingleReplica"):
        raise typer.BadParameter("must be HighlyAvailable or SingleReplica", param_hint="--availability")
    settings = WorldSettings.realistic() if realistic else WorldSettings()
    settings.hosted_clusters = hosted_clusters
    settings.availability = availability
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    world = World(data_dir, settings)
    try:
        world.start()
        world.wait_available(timeout=600 if realistic else 120)
        typer.echo(f"ready kubeconfig={world.kubeconfig_path} aws-env={world.aws_env_path}", color=False)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        world.close()
    typer.echo("stopped")


@sim_app.command("clusters")
def sim_clusters(
    data_dir: Path = typer.Option(..., "--dir", help="Directory for the kubeconfig and the clusters' data."),
    names: str = typer.Option("mgmt1,mgmt2", "--names", help="Comma-separated cluster (context) names."),
) -> None:
    """Bare simulated Kubernetes clusters (the API layer alone, no HyperShift), until Ctrl-C or SIGTERM."""
    from hcpsim.cluster import Simulator

    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if not wanted:
        raise typer.BadParameter("give at least one cluster name", param_hint="--names")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Simulator(data_dir) as sim:
        for name in wanted:
            sim.add_cluster(name)
        typer.echo(f"ready kubeconfig={sim.kubeconfig()}", color=False)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    typer.echo("stopped")


if __name__ == "__main__":
    app()
