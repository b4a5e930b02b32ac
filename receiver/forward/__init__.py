"""Forwarding to alarm-receiving centres (SIA DC-09) and to a Traccar map.

dc09.py (the message codec, sans-I/O), events.py (which event goes as
which code and format), config.py (targets' settings), outbox.py (the
hook that queues messages in the events' own transaction), forwarder.py
(the asyncio task inside `serve` that delivers the queue), cli.py
(`panic receiver forward ...`). Guide and guarantees: docs/arc.md.
"""
