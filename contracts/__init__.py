"""The messages, names and stream layout that every service shares. The only code services share."""
