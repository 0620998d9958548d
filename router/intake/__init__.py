"""Intake: what a connector hands the gateway, checked before it reaches a channel topic.

Pure and synchronous like the rest of the core: request signatures (`signature`), per-source
rate limits and the replay guard (`limits`), turning a request body in any of the accepted
forms into the channel record the engine would accept (`request`, validated by
`router.inbound.parse_inbound`), and Meta's webhooks (`meta`: handshake, signature,
payloads). The HTTP server and the Kafka producer live in `streams/gateway/`.
"""
