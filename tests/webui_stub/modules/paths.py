import os

models_path = os.environ.get("MULTIPASS_STUB_MODELS", "/models")
data_path = os.path.dirname(models_path)  # the hosts': the folder holding models/
