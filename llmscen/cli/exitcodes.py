"""Exit codes are API (documented in the README); they are defined in `llmscen.errors`."""

from llmscen.errors import COULD_NOT_RUN, INTERNAL_ERROR, INVALID_INPUT, INVALID_MEASUREMENT, OK
from llmscen.errors import FAILED as ASSERTIONS_FAILED

__all__ = ["ASSERTIONS_FAILED", "COULD_NOT_RUN", "INTERNAL_ERROR", "INVALID_INPUT",
           "INVALID_MEASUREMENT", "OK"]
