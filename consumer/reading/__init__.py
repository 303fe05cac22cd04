"""Reading Kafka: every topic the consumer reads, and the committed greetings that bench/load.py and the
end-to-end tests read too, go through this package.

`topics` opens a read_committed consumer on every partition of a topic and hands it to `loop.Reader`, the one
read loop with its one error policy; `greetings` decodes a record of `greetings` into a Greeting.
"""
