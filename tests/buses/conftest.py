from plugins.bus_fixtures import kafka_broker, nats_server  # noqa: F401 - fixtures
