"""Seller responsiveness scores and support metrics, pure: the per-ticket fold (`tickets`),
the facts it emits (`facts`), the per-vendor and per-queue books (`book`) with their quantile
sketches (`sketch`), and the score formula and tiers (`formula`). The stage that runs them is
`router.stages.scores`; its Kafka side `streams.stages.scores`."""
