"""The JSON the API answers with, as pydantic models: FastAPI validates each response against them and
documents them in the OpenAPI schema (``/openapi.json``, ``/docs``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Face(BaseModel):
    """One face found in the picture."""

    box: list[int] = Field(description="x, y, width, height in the picture's pixels (before the crop margin)",
                           min_length=4, max_length=4, examples=[[212, 96, 180, 180]])
    label: str = Field(description="the most probable emotion", examples=["happy"])
    confidence: float = Field(ge=0, le=1, description="its probability", examples=[0.91])
    probabilities: dict[str, float] = Field(description="every class → its probability (they sum to 1)")


class Prediction(BaseModel):
    """``POST /api/predict``: the faces of an uploaded picture, left to right."""

    faces: list[Face]
    members: list[str] = Field(description="the model files that voted (the ensemble's members)")
    seconds: float = Field(description="server time spent on the picture: decoding, detection, the models")
    width: int = Field(description="the picture's width in pixels")
    height: int = Field(description="the picture's height in pixels")
    annotated: str | None = Field(None, description="with ?annotate=true: the picture with boxes, labels and "
                                  "probability bars drawn on it, as a data:image/jpeg;base64 URL")


class LiveFrame(BaseModel):
    """``POST /api/live``: the faces of one webcam frame, run by the fast live member."""

    faces: list[Face]
    seconds: float
    width: int
    height: int


class Health(BaseModel):
    """``GET /api/health``."""

    status: str = Field(examples=["ok"])
    members: list[str] = Field(description="the members of the ensemble behind /api/predict")
    live_members: list[str] = Field(description="the members behind /api/live (the webcam view)")
    classes: list[str] = Field(description="the emotions, in the order of the models' outputs")
    micro_batching: bool = Field(description="whether concurrent requests go through the models together")


class Error(BaseModel):
    """Any refused request: 400 (not a decodable picture), 413 (too large), 415 (not JPEG/PNG/WebP),
    422 (no ``image`` field, a bad query value)."""

    error: str
