"""The greeter function: what it greets, the state it keeps and checks, the records it dead-letters."""
