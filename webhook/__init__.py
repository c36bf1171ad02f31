"""The robot callback webhook: a Flask app (`create_app`) served by gunicorn (`webhook/gunicorn.conf.py`)."""

from webhook.app import create_app

__all__ = ["create_app"]
