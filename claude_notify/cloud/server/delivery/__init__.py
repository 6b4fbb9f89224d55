"""The delivery engine: the outbox worker, backoff and the wake-up signal."""
