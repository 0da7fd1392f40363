"""Azure blob events: an Event Grid subscription delivering to a Storage Queue.

Storage Queues have no long polling: an empty queue is polled again after a pause that grows
to `poll_seconds`. A message (one Event Grid event, base64-encoded JSON as Event Grid writes
it) is deleted only once its events are applied; one that is not an Event Grid event is
logged and deleted.
"""

from __future__ import annotations

import logging

from . import PollingSource, Router
from .formats import parse_queue_message

log = logging.getLogger(__name__)

FIRST_PAUSE = 0.05  # seconds after the first empty poll; doubles up to poll_seconds


class AzureQueueSource(PollingSource):
    def __init__(self, name: str, spec, router: Router):
        super().__init__(name)
        self.spec = spec
        self.router = router
        self.client = None
        self._pause = FIRST_PAUSE

    def open(self) -> None:
        from azure.storage.queue import QueueClient

        spec = self.spec
        if spec.connection_string is not None:
            self.client = QueueClient.from_connection_string(
                spec.connection_string.get_secret_value(), spec.queue)
        else:
            if spec.sas_token is not None:
                credential = spec.sas_token.get_secret_value()
            else:
                from azure.identity import DefaultAzureCredential  # optional dependency

                credential = DefaultAzureCredential()
            self.client = QueueClient(spec.account_url, spec.queue, credential=credential)
        log.info("%s: receiving from queue %s", self.name, spec.queue)

    def secrets(self) -> tuple[str | None, ...]:
        spec = self.spec
        values = [v.get_secret_value() if v is not None else None
                  for v in (spec.connection_string, spec.sas_token)]
        if spec.connection_string is not None:  # its parts can show up alone
            for part in spec.connection_string.get_secret_value().split(";"):
                name, _, value = part.partition("=")
                if name.strip().lower() in ("accountkey", "sharedaccesssignature") and value:
                    values.append(value.strip())
        return tuple(values)

    def poll(self) -> None:
        spec = self.spec
        messages = list(self.client.receive_messages(
            messages_per_page=spec.max_messages, max_messages=spec.max_messages,
            visibility_timeout=spec.visibility_timeout))
        if not messages:
            self._stop.wait(self._pause)
            self._pause = min(self._pause * 2, spec.poll_seconds)
            return
        self._pause = FIRST_PAUSE
        events, useful, poison = self.read_messages(
            messages, lambda message: parse_queue_message(message.content),
            kind="an Event Grid event", source="azure-queue")
        applied = self.hand_over(events)
        for message in (useful + poison) if applied else poison:
            self.client.delete_message(message)
        if not applied and self.stopping:
            for message in useful:
                try:
                    self.client.update_message(message, visibility_timeout=0)
                except Exception as error:  # noqa: BLE001 - back after the visibility timeout
                    log.debug("%s: could not release a message: %s", self.name, self.describe_error(error))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
