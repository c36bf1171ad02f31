"""Orders: every change to an order (and the event it emits), and the courier's coverage of destinations."""
