"""Workflow actions. Importing this package registers every action in `REGISTRY`."""

from engine.actions import batch, core, outbound, records_actions  # noqa: F401  (importing registers the actions)
from engine.actions.base import REGISTRY, Action, ActionContext, ActionError, ActionResult, Services, register

__all__ = ["REGISTRY", "Action", "ActionContext", "ActionError", "ActionResult", "Services", "register"]
