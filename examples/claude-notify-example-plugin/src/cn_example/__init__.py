"""An example claude-notify plugin (see docs/plugins.md in claude-notify)."""
