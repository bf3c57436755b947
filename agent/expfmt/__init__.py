"""Prometheus exposition formats: parse text 0.0.4, render text 0.0.4 and OpenMetrics 1.0."""

from .parse import ParseResult, parse_text
from .render import CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT, render_both, render_openmetrics, render_text

__all__ = [
    "ParseResult", "parse_text", "render_both", "render_text", "render_openmetrics",
    "CONTENT_TYPE_TEXT", "CONTENT_TYPE_OPENMETRICS",
]
