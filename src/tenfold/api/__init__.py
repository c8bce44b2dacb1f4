"""HTTP api: FastAPI app, auth, errors and one route module per resource."""
