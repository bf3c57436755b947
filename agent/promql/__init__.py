"""PromQL, as Prometheus 2.42 has it: the lexer, the parser to an AST, the evaluator and its
functions. A leaf: it imports only the label matchers (agent/labels.py) and the RE2 wrapper;
the rules, the query API, config validation and silences import it, never the other way."""
