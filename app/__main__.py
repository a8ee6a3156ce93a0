"""`python -m app`: serve on $HOST:$PORT (Cloud Run sets PORT; SIGTERM stops gracefully)."""

import os

import uvicorn

if __name__ == "__main__":
    uvicorn.run(
        "app.main:app",
        host=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104 - a container must listen on every interface
        port=int(os.environ.get("PORT", "8080")),
        log_level=os.environ.get("LOG_LEVEL", "info"),
        proxy_headers=True,
        # Cloud Run kills the instance 10 s after SIGTERM: finish in-flight requests, then stop in time
        timeout_graceful_shutdown=8,
    )
