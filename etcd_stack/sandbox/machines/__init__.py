"""Members booted as machines (systemd-nspawn) for the tests, with the AWS they talk to standing in beside them."""
