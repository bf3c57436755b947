"""Log formats: journald priorities and JSON lines."""

import io
import json
import logging

from agent.logformat import JournalFormatter, JsonFormatter, handler_for


def record(level, msg):
    return logging.LogRecord("agent.x", level, __file__, 1, msg, (), None)


def test_journal_priorities():
    f = JournalFormatter()
    assert f.format(record(logging.WARNING, "disk full")) == "<4>agent.x: disk full"
    assert f.format(record(logging.ERROR, "a\nb")) == "<3>agent.x: a\n<3>b"


def test_json_lines():
    doc = json.loads(JsonFormatter().format(record(logging.INFO, "hello")))
    assert doc["level"] == "info" and doc["logger"] == "agent.x" and doc["message"] == "hello"
    assert doc["ts"].endswith("Z")


def test_auto_is_text_off_the_journal():
    h = handler_for("auto", io.StringIO())
    assert not isinstance(h.formatter, (JournalFormatter, JsonFormatter))
