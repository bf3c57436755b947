"""The shipped default rules run on synthetic series, for tests of a rule's behaviour."""

from agent.model import Snapshot


def fire(rule_names, frames):
    """Alerts of the named default rules after feeding `frames` [(t, families)]."""
    from agent.config import default_config
    from agent.rules.engine import Engine
    from agent.rules.history import History
    from agent.rules.loader import load_rules

    rules = [r for r in load_rules(default_config()).alerts if r.name in rule_names]
    history = History()
    engine = Engine(rules, history)
    for t, fams in frames:
        history.ingest(Snapshot(t, tuple(fams)))
        engine.evaluate(t)
    return sorted((a.labels["alertname"], a.state) for a in engine.active())
