"""The command relay: commands from a phone or a chat, run by the agent on the origin machine.

``models`` holds its tables, ``queue`` the state machine a command goes through
(``queued`` → ``delivered`` → ``running`` → ``done`` | ``failed``; or ``expired`` / ``refused``),
``hub`` wakes the connected agents, and :mod:`claude_notify.cloud.server.api.routes.commands`
is the HTTP and WebSocket face.
"""
