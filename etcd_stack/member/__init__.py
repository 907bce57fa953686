"""What runs on a member: pure renderers of its configuration, units, scripts and certificates."""
