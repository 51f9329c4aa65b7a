callbacks = {"ui_settings": [], "app_started": [], "before_ui": [], "model_loaded": []}


def on_ui_settings(callback, *, name=None):
    callbacks["ui_settings"].append(callback)


def on_app_started(callback, *, name=None):
    callbacks["app_started"].append(callback)


def on_before_ui(callback, *, name=None):
    callbacks["before_ui"].append(callback)


def on_model_loaded(callback, *, name=None):
    callbacks["model_loaded"].append(callback)


def ui_settings_callback():
    for c in callbacks["ui_settings"]:
        c()


def app_started_callback(demo, app):
    for c in callbacks["app_started"]:
        c(demo, app)


def before_ui_callback():
    for c in callbacks["before_ui"]:
        c()


def model_loaded_callback(sd_model):
    for c in callbacks["model_loaded"]:
        c(sd_model)
