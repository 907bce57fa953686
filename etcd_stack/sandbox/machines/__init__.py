"""Members as machines: etcd members booted by systemd-nspawn from their rendered user_data."""
