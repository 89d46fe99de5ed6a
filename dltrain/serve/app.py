"""The FastAPI app: `/health`, `/metadata`, `/predict` (JSON instances), `/predict/files` (uploads).

Every answer row is what `dltrain predict --json` prints for the same input (the same
`inference.describe_rows` over the same scores). A bad request is a 422 whose `detail`
names the instance (`["body", "instances", 3, "petal_length"]`) and says what was
expected; a request over the size limits is a 413; neither ever carries a traceback.
"""

# No `from __future__ import annotations` here: FastAPI reads the request model from the live annotation.
import json
import os
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any, AsyncIterator

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, WithJsonSchema, create_model
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .batching import Batcher
from .models import ServedModel, load_model
from .options import OPTIONS_ENV, ServeOptions
from .spec import InstanceError, NamedSpec


def app_from_env() -> FastAPI:
    """The app of one `--workers` process: it loads its own copy of the model."""
    options = ServeOptions(**json.loads(os.environ[OPTIONS_ENV]))
    return create_app(load_model(options.model, options.device), options)


def unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    return JSONResponse({"detail": errors}, status_code=422)


def instance_error(where: list[Any], exc: InstanceError) -> dict[str, Any]:
    """One FastAPI-shaped error: `loc` down to the field, `msg` saying what was expected."""
    loc = [*where, *([] if exc.field is None else [exc.field])]
    return {"loc": loc, "msg": exc.message, "type": "value_error"}


def column_error(row: int, exc: InstanceError) -> dict[str, Any]:
    """An error in the columnar form: `loc` is the input's list and the sample's place in it."""
    return {"loc": ["body", "inputs", exc.field, row], "msg": exc.message, "type": "value_error"}


def create_app(model: ServedModel, options: ServeOptions) -> FastAPI:
    """The app for one loaded model; its request schema comes from the model's input spec."""
    batcher: Batcher | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal batcher
        batcher = Batcher(model.scores, options.max_batch, options.max_wait_ms / 1000)
        batcher.start()
        yield
        await batcher.stop()  # uvicorn has let in-flight requests finish by now

    app = FastAPI(
        title=f"dltrain: {model.name}",
        version=__version__,
        lifespan=lifespan,
        description=f"A {model.task} model. Each instance is {model.spec.describe()}.",
    )
    app.add_middleware(BodyLimit, limit=options.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own 422 (a body that is not JSON, no `instances`), without echoing the input back
        return unprocessable([{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors()])

    instance = Annotated[Any, WithJsonSchema(model.spec.schema())]
    named = isinstance(model.spec, NamedSpec)
    instances_text = f"Up to {options.max_instances} instances; each is {model.spec.describe()}."
    fields: dict[str, Any] = {"instances": (list[instance], Field(description=instances_text))}
    if named:  # or TF Serving's columnar form: one list per input name
        fields = {
            "instances": (list[instance] | None, Field(None, description=instances_text)),
            "inputs": (
                dict[str, list[Any]] | None,
                Field(None, description="Instead of instances: one list per input name, a value per sample."),
            ),
        }
    request_model: type[BaseModel] = create_model(
        "PredictRequest",
        **fields,
        top_k=(int, Field(5, ge=1, description="Classes to list per instance, most probable first.")),
    )

    async def answer(samples: list[np.ndarray], names: list[Any], top_k: int) -> JSONResponse:
        """The rows as `predict --json` prints them (a JSONResponse: plain data needs no jsonable_encoder pass)."""
        assert batcher is not None
        scores = await batcher.submit(np.stack(samples))
        rows = model.rows(scores, top_k)
        return JSONResponse({"predictions": [{"input": name, **row} for name, row in zip(names, rows)]})

    def check_count(count: int) -> None:
        if count > options.max_instances:
            raise HTTPException(
                413,
                f"{count} instances in one request; this server takes at most "
                f"{options.max_instances} (--max-instances)",
            )
        if count == 0:
            raise HTTPException(
                422, [{"loc": ["body", "instances"], "msg": "give at least one instance", "type": "value_error"}]
            )

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Ready to answer: the model is loaded and passed its self-check."""
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        """Task, input spec (and its JSON Schema), class names, preprocessing, versions, serving limits."""
        limits = {k: v for k, v in asdict(options).items() if k not in ("model", "host", "port")}
        stats = {"batches": batcher.batches, "samples": batcher.samples} if batcher else {}
        return {**model.metadata(), "serving": {**limits, **stats}}

    @app.post("/predict", openapi_extra={"requestBody": {"required": True}})
    async def predict(body: request_model) -> JSONResponse:
        """Predictions for JSON instances, in order; each row is what `dltrain predict --json` prints."""
        instances, by_column = named_instances(body) if named else (body.instances, False)  # type: ignore[attr-defined]
        check_count(len(instances))
        samples, errors = [], []
        for i, item in enumerate(instances):
            try:
                samples.append(model.spec.read(item))
            except InstanceError as exc:
                errors.append(column_error(i, exc) if by_column else instance_error(["body", "instances", i], exc))
        if errors:
            return unprocessable(errors)
        return await answer(samples, list(range(len(samples))), body.top_k)  # type: ignore[attr-defined]

    def named_instances(body: Any) -> tuple[list[Any], bool]:
        """A named model's instances: `instances` as given, or rows made from the columnar `inputs` (True)."""
        if (body.instances is None) == (body.inputs is None):
            names = ", ".join(model.spec.names)  # type: ignore[union-attr]
            msg = f"give exactly one of instances ([{{{names}}}, ...]) and inputs ({{input: [value per sample], ...}})"
            raise HTTPException(422, [{"loc": ["body"], "msg": msg, "type": "value_error"}])
        if body.instances is not None:
            return body.instances, False
        try:
            return model.spec.columns(body.inputs), True  # type: ignore[union-attr]
        except InstanceError as exc:
            raise HTTPException(422, [instance_error(["body", "inputs"], exc)]) from None

    @app.post("/predict/files")
    async def predict_files(
        files: Annotated[list[UploadFile], File(description="Image files.")], top_k: Annotated[int, Query(ge=1)] = 5
    ) -> JSONResponse:
        """Predictions for uploaded image files (multipart field `files`), named by file name."""
        check_count(len(files))
        samples, errors = [], []
        for i, upload in enumerate(files):
            try:
                samples.append(model.spec.read_image(await upload.read()))
            except InstanceError as exc:
                errors.append(instance_error(["body", "files", i, upload.filename or ""], exc))
        if errors:
            return unprocessable(errors)
        return await answer(samples, [f.filename for f in files], top_k)

    return app


class BodyLimit:
    """Refuses a request body over `limit` bytes with a 413, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": self._message(int(length))}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI re-raises an HTTPException from reading the body as it is
                raise HTTPException(413, self._message(received))
            return message

        await self.app(scope, limited, send)

    def _message(self, size: int) -> str:
        return (
            f"the request body has {size} bytes or more; this server takes at most {self.limit} "
            f"(--max-request-mb); send fewer instances per request"
        )
