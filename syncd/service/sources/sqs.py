"""S3 bucket notifications through an SQS queue (raw, or from an SNS topic subscribed to it).

Long polling (`wait_seconds`); a message is deleted only once its events are applied. A
message that is not an S3 notification at all is logged and deleted (it could never be
applied; give the queue a redrive policy to keep such messages). Messages received while
the daemon stops are made visible again at once, for the next consumer.
"""

from __future__ import annotations

import logging

from . import PollingSource, Router
from .formats import parse_s3_message
from drivers.cloud import redact

log = logging.getLogger(__name__)


class SqsQueueSource(PollingSource):
    def __init__(self, name: str, spec, router: Router):
        super().__init__(name, threads=spec.receivers)
        self.spec = spec
        self.router = router
        self.client = None

    def open(self) -> None:
        import boto3
        from botocore.config import Config

        spec = self.spec
        session = boto3.session.Session(
            profile_name=spec.profile,
            aws_access_key_id=spec.access_key_id.get_secret_value() if spec.access_key_id else None,
            aws_secret_access_key=(spec.secret_access_key.get_secret_value()
                                   if spec.secret_access_key else None),
        )
        self.client = session.client(
            "sqs", region_name=spec.region, endpoint_url=spec.endpoint_url,
            config=Config(retries={"mode": "standard"}, read_timeout=spec.wait_seconds + 15,
                          connect_timeout=10),
        )
        log.info("%s: receiving from %s", self.name, redact(spec.queue_url))

    def secrets(self) -> tuple[str | None, ...]:
        spec = self.spec
        return tuple(value.get_secret_value() if value is not None else None
                     for value in (spec.secret_access_key, spec.access_key_id))

    def poll(self) -> None:
        spec = self.spec
        response = self.client.receive_message(
            QueueUrl=spec.queue_url, MaxNumberOfMessages=spec.max_messages,
            WaitTimeSeconds=spec.wait_seconds, VisibilityTimeout=spec.visibility_timeout,
        )
        messages = response.get("Messages", [])
        if not messages:
            return
        events, useful, poison = self.read_messages(
            messages, lambda message: parse_s3_message(message["Body"]),
            kind="an S3 notification", source="sqs")
        if self.hand_over(events):
            self._delete(useful + poison)
        else:
            self._delete(poison)
            if self.stopping:
                self._release(useful)

    def _delete(self, messages: list[dict]) -> None:
        for start in range(0, len(messages), 10):
            batch = messages[start:start + 10]
            response = self.client.delete_message_batch(
                QueueUrl=self.spec.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
            for failure in response.get("Failed", []):
                log.warning("%s: could not delete a message (%s); it will be delivered again",
                            self.name, failure.get("Message") or failure.get("Code"))

    def _release(self, messages: list[dict]) -> None:
        try:
            for start in range(0, len(messages), 10):
                self.client.change_message_visibility_batch(
                    QueueUrl=self.spec.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                             for i, m in enumerate(messages[start:start + 10])],
                )
        except Exception as error:  # noqa: BLE001 - they come back after the visibility timeout
            log.debug("%s: could not release messages: %s", self.name, self.describe_error(error))

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
