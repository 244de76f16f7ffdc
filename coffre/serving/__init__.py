"""Production serving: the gunicorn application (``server``), the checks run before it
starts (``checks``), request logs (``logs``), 503 pages while the database is away
(``outage``) and clear messages for a full or read-only disk (``disk``).
"""
