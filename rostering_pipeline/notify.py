"""Telling operators that something needs them. Pluggable: the default writes to the log."""

from __future__ import annotations

import logging

import dagster as dg

log = logging.getLogger("rostering.notifications")


class Notifier(dg.ConfigurableResource):
    """Where operator notices go. Subclass and override `notify` (e-mail, chat, a ticket
    system) and bind it as the `notifier` resource; messages carry IDs, never names."""

    def notify(self, subject: str, body: str) -> None:
        log.error("%s: %s", subject, body)
