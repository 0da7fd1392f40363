"""GCS bucket notifications through a Pub/Sub pull subscription.

Synchronous pull (up to `max_messages` at once); messages are acknowledged only once their
events are applied; on stop, unapplied ones are handed back at once (ack deadline 0). With
`emulator_host` (or $PUBSUB_EMULATOR_HOST) the client talks to the Pub/Sub emulator.
"""

from __future__ import annotations

import logging
import os

from . import PollingSource, Router
from .formats import parse_gcs_notification

log = logging.getLogger(__name__)

PULL_TIMEOUT = 10.0  # seconds one pull waits for messages


class PubSubPullSource(PollingSource):
    def __init__(self, name: str, spec, router: Router):
        super().__init__(name)
        self.spec = spec
        self.router = router
        self.client = None

    def open(self) -> None:
        from google.cloud import pubsub_v1

        host = self.spec.emulator_host or os.environ.get("PUBSUB_EMULATOR_HOST")
        if host:
            import grpc
            from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

            channel = grpc.insecure_channel(host)
            self.client = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
        elif self.spec.credentials_file:
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(self.spec.credentials_file)
            self.client = pubsub_v1.SubscriberClient(credentials=credentials)
        else:
            self.client = pubsub_v1.SubscriberClient()
        log.info("%s: pulling from %s", self.name, self.spec.subscription)

    def poll(self) -> None:
        from google.api_core import exceptions

        try:
            response = self.client.pull(
                request={"subscription": self.spec.subscription, "max_messages": self.spec.max_messages},
                timeout=PULL_TIMEOUT,
            )
        except exceptions.DeadlineExceeded:
            return  # nothing arrived in time
        received = list(response.received_messages)
        if not received:
            return
        events, useful, poison = self.read_messages(
            received, _parse, kind="a GCS notification", source="pubsub",
            handle=lambda item: item.ack_id)
        applied = self.hand_over(events)
        done = useful + poison if applied else poison
        if done:
            self.client.acknowledge(request={"subscription": self.spec.subscription, "ack_ids": done})
        if not applied and self.stopping and useful:
            try:
                self.client.modify_ack_deadline(request={
                    "subscription": self.spec.subscription, "ack_ids": useful, "ack_deadline_seconds": 0})
            except Exception as error:  # noqa: BLE001 - back after the ack deadline anyway
                log.debug("%s: could not release messages: %s", self.name, self.describe_error(error))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _parse(item):
    message = item.message
    attributes = dict(message.attributes)
    if "eventTime" not in attributes and message.publish_time:
        attributes["eventTime"] = message.publish_time.isoformat()
    return parse_gcs_notification(attributes, bytes(message.data))
