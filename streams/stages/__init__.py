"""Kafka adapters of the stages: which topics and tables each runs on, batching, delivery.

The stages' logic is in `router.stages`; these modules only connect it to faust.
"""
