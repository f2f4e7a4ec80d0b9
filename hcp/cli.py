"""The `hcp-runbooks` command."""

import typer

app = typer.Typer(help="Runbook automation for OpenShift hosted control planes (HyperShift).", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo("hcp-runbooks 0.1.0")
