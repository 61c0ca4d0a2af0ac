"""Exit codes are API: CI scripts branch on them (documented in the README)."""

OK = 0               # everything ran and every SLO and expectation passed
ASSERTIONS_FAILED = 1  # the run completed but an SLO or expectation failed
INVALID_INPUT = 2    # the scenario or the command line is invalid (nothing was sent)
COULD_NOT_RUN = 3    # target unreachable, service failed, interrupted (partial results saved)
