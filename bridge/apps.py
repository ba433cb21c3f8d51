from django.apps import AppConfig


class BridgeConfig(AppConfig):
    """The bridge worker: the only code that calls Ray. An app only so that it can hold the
    commands that run it (castray_worker, castray_up, castray_bench); it has no models."""

    name = "bridge"
