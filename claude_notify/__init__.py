"""claude-notify: know when a long command — or Claude — is done.

Only the version lives here: ``claude-notify`` wraps every command a user runs, so importing the
package must cost nothing beyond what the chosen path needs.
"""

__version__ = "0.1.0"
