"""Reading Kafka: every topic the consumer reads goes through this package.

`topics` opens a read_committed consumer on every partition of a topic and reads it with `loop.Reader`, the one
read loop with its one error policy; `greetings` decodes a record of `greetings` into a Greeting.
"""
