"""The HTTP app: POST /statefun's answers, the probes and the metrics, built from the Settings."""
