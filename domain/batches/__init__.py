"""Batches (robot jobs): creation, dispatch to the robot, the robot's results, the state machine and the summary."""
