"""Herald in the Django admin: producers and host policies (ModelAdmins) and the operator console
for messages and target hosts (custom views: messages and hosts' state live in DynamoDB, not in
Django's database)."""

from django.contrib import admin

from notifications.admin.policies import HostPolicyAdmin
from notifications.admin.producers import ProducerAdmin
from notifications.admin.views import OperatorConsole

__all__ = ["HostPolicyAdmin", "OperatorConsole", "ProducerAdmin"]

OperatorConsole(admin.site).install()
