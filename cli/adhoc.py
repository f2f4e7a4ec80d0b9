"""A runbook's flow run in this process: a terminal's `hcp-runbooks run`, the demo, a bench child.

Such a run sends no flow-run heartbeats. Prefect's heartbeats exist to let an automation mark a
run Crashed when the process that ran it died unseen (docs: "Detect zombie flows", for runs that
deployments start); a run started here ends with its process, in front of the person or the tool
that started it, and the lock's lease and `hcp-runbooks recover` cover a killed one. Runs that a
worker starts from a deployment keep them. Prefect 3.9.1 also joins its heartbeat thread at the end
of every run while that thread sleeps in whole seconds (`time.sleep(1)` steps in
`prefect.flow_engine._send_heartbeats`), which added up to a second to each run here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect import Flow

__all__ = ["run_here"]


def run_here(flow: Flow[..., Any], params: Any) -> Any:
    """Run `flow(params)` in this process and return its final state (never raises for the run's
    own failure: the caller prints the report and decides the exit code)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings  # the CLI starts without Prefect

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        return flow(params, return_state=True)
