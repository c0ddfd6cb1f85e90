"""Schedules: the scheduler that fires slots once, its state in the store, and the trigger maths."""
