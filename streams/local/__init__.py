"""The local development broker: Apache Kafka (KRaft) from the official Maven jars."""
