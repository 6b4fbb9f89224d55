"""Team workspaces: members and roles, invites, ownership transfer and the activity log."""
