"""The broadcaster's own metrics (one set per process, in prometheus_client's default registry)."""

from prometheus_client import Counter, Gauge

CLIENTS = Gauge("wf_websocket_clients", "WebSocket clients connected")
DROPPED = Counter("wf_websocket_dropped_total", "Clients disconnected for falling too far behind")
RELAYED = Counter("wf_events_relayed_total", "Events taken from the stream and handed to the clients")
