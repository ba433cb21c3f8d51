from django.apps import AppConfig
from django.conf import settings


class TransfersConfig(AppConfig):
    name = "transfers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        if settings.CASTRAY_GC_FREEZE:
            from castray_site.lib import gc_tuning

            gc_tuning.install()
