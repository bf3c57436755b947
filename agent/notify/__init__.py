"""Delivering alerts: a durable outbox, a dispatcher with retries, and one module per channel."""
