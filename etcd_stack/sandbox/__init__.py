"""Real etcd members on loopback, from the members' own renderers: processes, local PKI, a client."""
