"""Spend: token pricing, per-node cost accounting and budgets. Pure (no I/O, no clock).

- pricing: the `model_pricing` catalog (the reference's format) and the cost of a token count;
- meter: a node's usage events -> the tokens and dollars each event adds (across threads);
- budget: which budget events a new total crosses;
- report: per-model and per-node tables over logged usage events (`codeswarm spend`).
"""
