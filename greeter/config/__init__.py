"""Configuration: the GREETER_* settings, the logs, and the names that tie the greeter to the runtime."""
