"""``python -m claude_notify`` behaves exactly like the ``claude-notify`` script."""

from claude_notify.cli import main

if __name__ == "__main__":
    main()
