"""Automations: the saved rules, their triggers, conditions and variables, and their execution records."""
