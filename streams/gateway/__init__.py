"""The channel gateway: an HTTP front door that puts connectors' messages on channel topics.

`app` holds the aiohttp handlers (HTTP in, JSON out), `sink` the Kafka producer. What a request
must look like and the checks it goes through are the core's (`router/intake/`).
"""
