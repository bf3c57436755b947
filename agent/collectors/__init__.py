"""collectors of llm-agent."""
