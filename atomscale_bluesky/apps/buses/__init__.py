"""Document buses the ``consume`` command reads from: Kafka (bluesky-kafka) and NATS JetStream
(bluesky-nats), each one module on a shared consumer loop that acknowledges a message only once
the run it belongs to is in the spool (``consumer_loop.py``)."""
