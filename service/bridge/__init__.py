"""Bridges: other networks' streams turned into events on the events topic.

A bridge is a producer like any other: what it writes passes the worker's decoder, keyed by
actor. It uses the core (models), the settings and the runtime's Kafka client options, never
the worker or Faust (tests/test_layers.py).
"""
