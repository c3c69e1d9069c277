"""Create the DynamoDB table and the SQS queues. Idempotent; works against moto or AWS."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from notifications.aws import AWSUnavailable
from notifications.queue import default_queue
from notifications.store import default_store


class Command(BaseCommand):
    help = "Create the DynamoDB table (with its indexes) and the SQS queue and dead-letter queue."

    def handle(self, *args: Any, **options: Any) -> None:
        store, queue = default_store(), default_queue()
        try:
            created = store.ensure_table()
            queue.ensure_queues()
        except AWSUnavailable as error:
            raise CommandError(f"AWS is not reachable: {error}") from error
        table_state = "created" if created else "already present"
        self.stdout.write(f"table {settings.DYNAMODB_TABLE}: {table_state}")
        self.stdout.write(f"queue {settings.SQS_QUEUE_NAME}: ready")
        self.stdout.write(
            f"dead-letter queue {settings.SQS_DLQ_NAME}: ready "
            f"(after {settings.SQS_MAX_RECEIVE_COUNT} receives)"
        )
