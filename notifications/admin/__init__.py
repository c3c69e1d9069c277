"""Herald in the Django admin: producers (a ModelAdmin) and the operator console for messages
(custom views: messages live in DynamoDB, not in Django's database)."""

from django.contrib import admin

from notifications.admin.producers import ProducerAdmin
from notifications.admin.views import OperatorConsole

__all__ = ["OperatorConsole", "ProducerAdmin"]

OperatorConsole(admin.site).install()
