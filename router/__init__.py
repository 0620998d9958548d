"""The domain core: pure, synchronous, no Kafka. Takes records and a clock, returns decisions."""
