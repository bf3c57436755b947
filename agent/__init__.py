"""llm-agent: one process that watches a GPU host serving LLMs."""

__version__ = "0.1.0"
