"""The read side: hour schedules and audit histories, kept exactly once.

``projections`` imports ``iop_episodes``; nothing in ``iop_episodes`` imports
``projections``.
"""
