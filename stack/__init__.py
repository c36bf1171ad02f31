"""Running robotjobs on one machine: the test runner, the local stack (make up/down) and the demo (make demo)."""
