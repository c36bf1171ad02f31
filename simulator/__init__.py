"""The robot simulator: an HTTP service on loopback that speaks robot-protocol.md (see simulator.server)."""
