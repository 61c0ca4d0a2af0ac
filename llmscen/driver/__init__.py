"""A run as a library call: the driver coordinates workers, judges live, writes outputs.

    from llmscen.driver import run_plan
    outcome = run_plan(plan, registry, "reports/x")
    outcome.exit_code, outcome.results.outcome.status
"""

from __future__ import annotations

from llmscen.driver.run import (
    RunOutcome,
    default_out_dir,
    default_workers,
    make_meta,
    redact_argv,
    run_plan,
)

__all__ = ["RunOutcome", "default_out_dir", "default_workers", "make_meta", "redact_argv",
           "run_plan"]
