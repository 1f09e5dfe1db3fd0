"""The Roboflow Inference server's CPU app, as its Docker image builds it (roboflow/inference
docker/config/cpu_http.py), for scripts/bench-serve.sh: `uvicorn roboflow_server:app`."""
from inference.core.env import MAX_ACTIVE_MODELS
from inference.core.interfaces.http.http_api import HttpInterface
from inference.core.managers.base import ModelManager
from inference.core.managers.decorators.fixed_size_cache import WithFixedSizeCache
from inference.core.registries.roboflow import RoboflowModelRegistry
from inference.models.utils import ROBOFLOW_MODEL_TYPES

model_registry = RoboflowModelRegistry(ROBOFLOW_MODEL_TYPES)
model_manager = WithFixedSizeCache(ModelManager(model_registry=model_registry), max_size=MAX_ACTIVE_MODELS)
app = HttpInterface(model_manager).app
