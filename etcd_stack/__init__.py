"""etcd on AWS as a Pulumi program: one module per concern."""
