"""The HTTP API: routes under ``/v1``, their dependencies and the one error shape."""
