"""The run report: one markdown document per run (a Prefect artifact, and what the CLI prints).

Timeline with durations, what changed, what was undone, verification results and figures such as
API downtime. It never holds secrets: only names, counts, hashes and locations."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, Field

from hcp.plan import PlanStep, plan_markdown

__all__ = ["StepRecord", "RunReport"]


class StepRecord(BaseModel):
    name: str
    started_at: datetime
    seconds: float
    outcome: Literal["done", "resumed", "failed", "skipped"]
    detail: str = ""


class RunReport(BaseModel):
    runbook: str
    operation_id: str
    management_cluster: str
    hosted_cluster: str
    dry_run: bool = False
    status: Literal["running", "succeeded", "failed", "planned"] = "running"
    started_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    changes: list[str] = Field(default_factory=list)
    undone: list[str] = Field(default_factory=list)
    verification: list[str] = Field(default_factory=list)
    approvals: list[str] = Field(default_factory=list)
    figures: dict[str, str] = Field(default_factory=dict)
    plan: list[PlanStep] = Field(default_factory=list)
    error: str | None = None
    # where the cluster stands (kept current by runbooks whose steps are not all undoable) and the
    # command that continues or recovers the operation: what an SRE reads first after a failure
    cluster_state: str | None = None
    next_command: str | None = None
    # what the run produced, for callers (fleet summaries, incident tooling)
    location: str | None = None
    size_bytes: int | None = None

    def finish(self, status: Literal["succeeded", "failed", "planned"], error: str | None = None) -> None:
        self.status, self.error, self.finished_at = status, error, datetime.now(timezone.utc)

    def to_markdown(self) -> str:
        title = f"# {self.runbook} of {self.hosted_cluster} on {self.management_cluster}: {self.status}"
        out = [title, "", f"- operation: `{self.operation_id}`", f"- started: {self.started_at:%Y-%m-%d %H:%M:%S} UTC"]
        if self.finished_at:
            out.append(f"- took: {(self.finished_at - self.started_at).total_seconds():.1f} s")
        if self.dry_run:
            out.append("- **dry run**: nothing was changed")
        if self.error:
            out += ["", "## Error", "", f"```\n{self.error}\n```"]
        if self.cluster_state and self.status != "succeeded":
            out += ["", "## Where the cluster is now", "", self.cluster_state]
        if self.next_command and self.status == "failed":
            out += ["", "## To continue or recover", "", f"```\n{self.next_command}\n```"]
        if self.figures:
            out += ["", "## Figures", "", "| what | value |", "|---|---|"]
            out += [f"| {k} | {v} |" for k, v in self.figures.items()]
        if self.steps:
            out += ["", "## Timeline", "", "| step | started (UTC) | seconds | outcome | detail |", "|---|---|---|---|---|"]
            out += [f"| {s.name} | {s.started_at:%H:%M:%S} | {s.seconds:.2f} | {s.outcome} | {s.detail or '-'} |"
                    for s in self.steps]
        for heading, items in (("What changed", self.changes), ("What was undone", self.undone),
                               ("Verification", self.verification), ("Approvals", self.approvals)):
            if items:
                out += ["", f"## {heading}", ""] + [f"- {i}" for i in items]
        if self.plan:
            out += ["", "## Plan" if self.dry_run else "## Plan it ran", "", plan_markdown(self.plan)]
        return "\n".join(out) + "\n"
