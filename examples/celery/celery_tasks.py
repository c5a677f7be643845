"""The seed's ``celery_tasks`` module (seed 000, "First, you will need to be running
redis-server and celery -A celery_tasks worker"): a Celery app on Redis with one task,
``ascii_filter`` = the tutorial's ``filters.ascii``.

Frames are PIL images, so messages and results are pickled (Celery's ``pickle`` serializer:
safe only between processes you trust, as with multiprocessing). The broker and the result
backend are the Redis server at ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from celery import Celery  # noqa: E402

import filters  # noqa: E402  (examples/filters.py)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("celery_tasks", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(task_serializer="pickle", result_serializer="pickle",
                accept_content=["pickle"], result_accept_content=["pickle"],
                broker_connection_retry_on_startup=True)


@app.task
def ascii_filter(frame):
    return filters.ascii(frame)
