"""Alert rules: a PromQL subset (parser, evaluator, history) and the alert state machine."""
