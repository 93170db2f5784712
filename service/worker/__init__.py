"""The streaming worker: the detection core wrapped in Faust agents over Kafka."""
