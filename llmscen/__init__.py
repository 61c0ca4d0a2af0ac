"""llmscen: load- and correctness-tests for LLM and GenAI inference services."""

__version__ = "0.1.0"
