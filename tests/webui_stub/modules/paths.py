import os

models_path = os.environ.get("MULTIPASS_STUB_MODELS", "/models")
