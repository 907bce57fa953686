"""Members booted as machines (systemd-nspawn) from their rendered user_data, with the AWS they talk to
standing in beside them."""
