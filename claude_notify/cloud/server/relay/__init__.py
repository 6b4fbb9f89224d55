"""The command relay: commands from a phone or a chat, run by the agent on the origin machine.

``models`` holds its tables, ``queue`` the state machine a command goes through
(``queued`` → ``delivered`` → ``running`` → ``done`` | ``failed``; or ``expired`` / ``refused``),
``state`` the per-app :class:`~.state.Relay` (limits, and the one way a command is submitted),
``hub`` wakes the connected agents and ``tunnel`` is their WebSocket (its messages:
:mod:`claude_notify.agent.wire`). From chats: ``link`` redeems link codes, ``telegram``,
``discord``, ``feishu`` and ``chat`` take replies and ``/run``, ``actions`` and ``reply_tokens``
are what a notification offers. The HTTP faces are
:mod:`claude_notify.cloud.server.api.routes.commands` and
:mod:`claude_notify.cloud.server.api.routes.inbound`.
"""
