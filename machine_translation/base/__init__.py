"""The shared base every other group stands on: typed errors, safe file writing, the option
dataclasses with their one default each, JSON field checks, and the runtime (device,
threads, memory). It imports nothing else of the application."""
