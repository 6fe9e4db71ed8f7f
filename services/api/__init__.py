"""The HTTP API: takes commands over HTTP, publishes them to NATS, waits for their outcome in the log, and serves the
read model and the web page."""
