"""The RabbitMQ channel layer (``pip install 'headrace[rabbitmq]'``); see :mod:`.layer`."""

from headrace.layers.rabbitmq.layer import RabbitMQChannelLayer
from headrace.layers.rabbitmq.link import RabbitMQUnavailable
from headrace.layers.rabbitmq.settings import DEFAULT_URL, RabbitMQOptions

__all__ = ["DEFAULT_URL", "RabbitMQChannelLayer", "RabbitMQOptions", "RabbitMQUnavailable"]
