"""Tests that boot members as machines, and the pieces those machines are made of."""
