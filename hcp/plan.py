"""A runbook's plan: the ordered steps it will take, what each changes, and the `oc` equivalent.

Dry runs return it; approval gates show it; reports include it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["PlanStep", "plan_markdown"]


class PlanStep(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: str
    changes: str = ""  # empty: read-only
    command: str = ""  # what an SRE would type for the same step
    lowers_availability: bool = False
    destructive: bool = False  # cannot be undone (data deleted or replaced)

    @property
    def read_only(self) -> bool:
        return not self.changes


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def plan_markdown(steps: list[PlanStep]) -> str:
    lines = ["| # | step | changes | equivalent command |", "|---|---|---|---|"]
    for i, s in enumerate(steps, 1):
        changes = (("**destructive:** " if s.destructive else "")
                   + ("**lowers availability:** " if s.lowers_availability else "") + (s.changes or "nothing (read-only)"))
        lines.append(f"| {i} | {_cell(s.step)} | {_cell(changes)} | `{_cell(s.command)}` |" if s.command
                     else f"| {i} | {_cell(s.step)} | {_cell(changes)} | - |")
    return "\n".join(lines)
