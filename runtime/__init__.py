"""The plumbing services share to run: NATS connections, draining, logs and metrics, settings, reading the log.
contracts/ holds what they agree on (messages, names, layouts); this package holds how they run."""
