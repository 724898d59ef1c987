"""flask-jobs: a Flask front that queues jobs and workers that do them, over RabbitMQ with rabbitipc.

    web.py     POST /jobs -> 202 + job id once the broker confirmed the job; GET /jobs/<id> -> status
    worker.py  takes one job at a time, does it, reports the result, then acks
    jobs.py    what both sides share: settings, the job's validation and work, the status board
"""
