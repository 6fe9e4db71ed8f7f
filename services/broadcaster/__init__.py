"""The broadcaster: relays every event of the log, live, to WebSocket clients."""
