"""The sample service deployctl deploys: a small notes API on FastAPI + SQLAlchemy 2 + Postgres/pgvector.

Reads DATABASE_URL, SECRET_KEY and PORT (and Cloud Run's K_SERVICE/K_REVISION) from the environment.
"""
