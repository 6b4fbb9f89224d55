"""``claude-notify agent``: the origin machine's end of the command relay.

``policy`` decides what may run (local allow-list, deny-list and directories, enforced here
whatever the server says), ``store`` keeps the credential, the settings and the journal of
started commands, and ``tunnel`` holds the WebSocket and runs each command through
``claude-notify run``.
"""
