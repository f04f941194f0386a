"""The applications built on the callback: the command line, demo, replay, 0MQ consumer and run catalog.

Nothing outside this package imports it; it imports devices, plans, the callback, client, server and sim.
"""
