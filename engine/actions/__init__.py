"""Workflow actions. Importing this package registers every action in `REGISTRY`."""

from engine.actions.base import REGISTRY, Action, ActionContext, ActionError, ActionResult, Services, register

__all__ = ["REGISTRY", "Action", "ActionContext", "ActionError", "ActionResult", "Services", "register"]
