"""The process: greeter-serve, gunicorn's master and its uvicorn workers with their HTTP bounds."""
