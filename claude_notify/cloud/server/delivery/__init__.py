"""The delivery engine: the outbox steps (``engine``), what a row sends (``message``), the retry
policy (``retry``), the worker, its HTTP client and the wake-up signal."""
