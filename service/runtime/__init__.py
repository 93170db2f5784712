"""The delivery protocol between Kafka and the core: plain classes with in-memory twins.
No Faust import."""
