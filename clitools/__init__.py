"""What the greeter's command-line tools share: stop signals, a progress line and the Kafka flags."""
