"""Sample data for demos, notebooks and tests, built through the domain's own use cases; not part of the domain."""
