"""The cloud upgrade: the light client side and, behind the ``[server]`` extra, the server."""
