"""Pulumi components: the AWS resources of a stack. Nothing here runs a process or calls AWS itself."""
