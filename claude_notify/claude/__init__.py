"""Claude Code integration: the hook, its delivery process, settings and transcripts."""
