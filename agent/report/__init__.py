"""Reports: figures from the history file (compute), rendered as text, Markdown, HTML with
inline SVG charts, or JSON (render, svg); on demand (`llm-agent report`) or on a schedule
([[reports]], schedule)."""
