"""Runbooks in a child process (so a test can kill the runner like a dead machine), and the report
artifact a run left behind (a failed flow returns nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pydantic import BaseModel

from hcp.naming import HostedClusterRef

ROOT = Path(__file__).resolve().parents[2]

# argv: module, flow function, params model, params JSON, and a step name after which the child
# SIGKILLs itself ("" for none): no cleanup, no undo, as if the machine died.
_CHILD = """
import importlib, os, signal, sys
from tasks import runbook

module, flow_name, model_name, params_json, die_after = sys.argv[1:6]
if die_after:
    step = runbook.Runbook.step

    def step_then_die(self, task, *args, **kwargs):
        result = step(self, task, *args, **kwargs)
        if task.name == die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    runbook.Runbook.step = step_then_die
mod = importlib.import_module(module)
getattr(mod, flow_name)(getattr(mod, model_name).model_validate_json(params_json))
"""


def _argv(module: str, flow_name: str, params: BaseModel, die_after: str) -> list[str]:
    return [sys.executable, "-c", _CHILD, module, flow_name, type(params).__name__, params.model_dump_json(), die_after]


def _env(storage: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL
    return dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()), PREFECT_LOCAL_STORAGE_PATH=str(storage))


def start_flow(module: str, flow_name: str, params: BaseModel, storage: Path, *,
               die_after: str = "") -> subprocess.Popen[bytes]:
    """Start `module.flow_name(params)` in a child process on the test's Prefect server and result storage;
    its output goes to a file (`child_log(child)` reads its end)."""
    log = tempfile.NamedTemporaryFile(prefix=f"child-{flow_name}-", suffix=".log", dir=storage, delete=False)
    child = subprocess.Popen(_argv(module, flow_name, params, die_after), cwd=ROOT, env=_env(storage),
                             stdout=log, stderr=subprocess.STDOUT)
    log.close()
    child.log_path = Path(log.name)  # type: ignore[attr-defined]
    return child


def child_log(child: subprocess.Popen[bytes], tail: int = 4000) -> str:
    path: Path | None = getattr(child, "log_path", None)
    return path.read_text(errors="replace")[-tail:] if path is not None and path.exists() else ""


def wait_child(child: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for the child; one that outlives `timeout` is killed (it must not keep acting on the world
    in later tests) and the test fails with the end of its output."""
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(30)
        raise AssertionError(f"the child run did not end within {timeout:.0f} s; its output ends:\n{child_log(child)}") from None


def run_flow_until_killed(module: str, flow_name: str, params: BaseModel, storage: Path, die_after: str) -> None:
    """Run it in a child that kills itself right after the step `die_after`; fails if it ended otherwise."""
    child = subprocess.run(_argv(module, flow_name, params, die_after), cwd=ROOT, env=_env(storage),
                           capture_output=True, timeout=300)
    assert child.returncode == -9, f"the child did not die after {die_after}: {child.stderr.decode()[-2000:]}"


def latest_report(runbook: str, cluster: str | HostedClusterRef) -> str:
    """The newest report artifact of `runbook` on `cluster` (NAMESPACE/NAME), "" if none."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from tasks.runbook import artifact_key
    ref = cluster if isinstance(cluster, HostedClusterRef) else HostedClusterRef.parse(cluster)
    key = artifact_key(runbook, ref.namespace, ref.name, "report")
    with get_client(sync_client=True) as c:
        found = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                 sort=ArtifactSort.CREATED_DESC, limit=1)
    return str(found[0].data) if found else ""
