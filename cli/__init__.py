"""The operators' terminal: submit a batch, follow it, read its summary, retry its failed orders."""
