"""The baseline: an endpoint of the receiver's shape that parses and validates, then forgets.

`POST /webhooks/{source}` takes one canonical event or `{"events": [...]}`, validates it with
the same pydantic models as the receiver and answers 202 with the same body. No signature
check, no database, no broker: what is left is the cost of HTTP, JSON and validation, the
floor the real receiver is measured against.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, HTTPException, Request, status
from pydantic import BaseModel, ValidationError

from worker.inbound.schema import CanonicalEvent, EventBatch

app = FastAPI()


class Accepted(BaseModel):
    accepted: int
    duplicates: int


@app.post("/webhooks/{source}", status_code=status.HTTP_202_ACCEPTED)
async def receive(source: str, request: Request) -> Accepted:
    body = await request.body()
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "events" in data:
            events = EventBatch.model_validate(data).events
        else:
            events = [CanonicalEvent.model_validate(data)]
    except (ValueError, ValidationError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "invalid event") from None
    return Accepted(accepted=len(events), duplicates=0)
