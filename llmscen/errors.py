"""Exit codes, and the one base class of every error llmscen raises for its user.

Exit codes are API: CI scripts branch on them (the README's table). Each error
carries the code it maps to, so `cli/` turns any of them into a message and an
exit without knowing the kinds; anything else that escapes is a bug, reported
as an internal error with its own code, never as 1 ("assertions failed").
"""

from __future__ import annotations

OK = 0                    # the run completed and every SLO, request and expectation passed
FAILED = 1                # the run completed, but an SLO, request or expectation failed
INVALID_INPUT = 2         # the scenario, a results file or the command line is invalid
COULD_NOT_RUN = 3         # could not be carried out, or interrupted (partial results saved)
INVALID_MEASUREMENT = 4   # the load generator was the bottleneck: SLOs not judged
INTERNAL_ERROR = 70       # a bug in llmscen or a plugin (EX_SOFTWARE)


class LlmscenError(Exception):
    """An error for the user; `exit_code` says how a command ends because of it."""

    exit_code = INTERNAL_ERROR


class InputError(LlmscenError):
    """Something the user gave is invalid; nothing was sent."""

    exit_code = INVALID_INPUT


class RunError(LlmscenError):
    """The run could not be carried out. `kind` is one of the outcome's run reasons
    (`service_failed`, `target_not_ready`, ...: assertions/verdict.py)."""

    exit_code = COULD_NOT_RUN

    def __init__(self, message: str, kind: str = "worker_failed") -> None:
        super().__init__(message)
        self.kind = kind
