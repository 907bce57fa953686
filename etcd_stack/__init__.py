"""etcd on AWS as a Pulumi program, in layers: the model (config, releases, addressing, tags, upgrade),
member/ (what a member runs), cloud/ and sandbox/ (where it runs), preview/ and ops/ (what drives them),
and cli."""
