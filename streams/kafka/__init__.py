"""Kafka plumbing: the one emit path, topics and their creation, the faust transport and
every private faust attribute the engine uses, compacted-topic followers, changelog
recovery, ACLs, client settings."""
