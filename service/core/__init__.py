"""The pure core: events in, state and alerts out. No Kafka, no Faust, no I/O."""
