from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Herald notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from notifications.delivery.allowed_networks import allowed_networks_policy

        allowed_networks_policy()  # parsed now: a typo stops the process here
