from django.apps import AppConfig


class ColdchainConfig(AppConfig):
    name = "coldchain"
