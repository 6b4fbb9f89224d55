"""The web app, served by ``claude-notify server`` itself under ``/app``: server-rendered pages
(Jinja2, autoescaped) with vendored htmx, usable with JavaScript off. See :mod:`.pages`."""
