"""`wf`: drive and watch workflows from a terminal, through the HTTP API and the broadcaster's WebSocket only."""
