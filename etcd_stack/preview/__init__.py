"""The offline render: realistic mocks of AWS and the program run in-process under them."""
