"""The `hcp-runbooks` command."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path

import typer

app = typer.Typer(help="Runbook automation for OpenShift hosted control planes (HyperShift).", no_args_is_help=True)
sim_app = typer.Typer(help="The embedded simulator of HyperShift management clusters.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo("hcp-runbooks 0.1.0")


@app.command()
def demo(
    data_dir: Path = typer.Option(None, "--dir", help="Where the simulator keeps its files (default: a temporary directory)."),
) -> None:
    """The main job on the embedded simulator (until the runbooks land: a smoke scenario)."""
    from hcpsim.demo import run_smoke  # the demo wires the simulator in; product code never imports it

    if data_dir is None:
        with tempfile.TemporaryDirectory(prefix="hcp-demo-") as tmp:
            run_smoke(Path(tmp), typer.echo)
    else:
        run_smoke(data_dir, typer.echo)


@sim_app.command("up")
def sim_up(
    data_dir: Path = typer.Option(..., "--dir", help="Directory for the kubeconfig and the clusters' data."),
    clusters: str = typer.Option("mgmt1,mgmt2", help="Comma-separated cluster (context) names."),
) -> None:
    """Run simulated management clusters in the foreground until Ctrl-C or SIGTERM."""
    from hcpsim.cluster import Simulator

    names = [n.strip() for n in clusters.split(",") if n.strip()]
    if not names:
        raise typer.BadParameter("give at least one cluster name", param_hint="--clusters")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Simulator(data_dir) as sim:
        for name in names:
            sim.add_cluster(name)
        kubeconfig = sim.kubeconfig()
        typer.echo(f"ready kubeconfig={kubeconfig}", color=False)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    typer.echo("stopped")


if __name__ == "__main__":
    app()
