"""Day-2 procedures, written once over a transport: the sandbox's processes or SSM on AWS."""
