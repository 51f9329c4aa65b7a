"""Script and ScriptRunner with the real hook order and error handling (errors are reported,
never raised, as in A1111)."""

from collections import namedtuple

from modules import errors

AlwaysVisible = object()
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []


class Script:
    name = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None
    api_info = None
    setup_for_ui_only = False

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def process_batch(self, p, *args, **kwargs):
        # called for every batch, after the host set its job count (kwargs: batch_number,
        # prompts, seeds, subseeds; A1111 1.10.1 and Forge 2 modules/scripts.py:201)
        pass

    def postprocess(self, p, processed, *args):
        pass

    def after_component(self, component, **kwargs):
        pass


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.selectable_scripts = []
        self.alwayson_scripts = []
        self.titles = []
        self.infotext_fields = []
        self.paste_field_names = []
        self.inputs = [None]

    def add_alwayson(self, script, n_args):
        script.alwayson = True
        script.args_from = len(self.inputs)
        script.args_to = script.args_from + n_args
        self.inputs.extend([None] * n_args)
        self.scripts.append(script)
        self.alwayson_scripts.append(script)

    def _each(self, method, p, *extra):
        for script in self.alwayson_scripts:
            try:
                script_args = p.script_args[script.args_from : script.args_to]
                getattr(script, method)(p, *extra, *script_args)
            except Exception:
                errors.report(f"Error running {method}: {script.filename}", exc_info=True)

    def setup_scrips(self, p, *, is_ui=True):
        self._each("setup", p)

    def before_process(self, p):
        self._each("before_process", p)

    def process(self, p):
        self._each("process", p)

    def process_batch(self, p, **kwargs):
        # ScriptRunner.process_batch (Forge 2 modules/scripts.py:880-886): the script's args,
        # then the keywords
        for script in self.alwayson_scripts:
            try:
                script.process_batch(p, *p.script_args[script.args_from : script.args_to], **kwargs)
            except Exception:
                errors.report(f"Error running process_batch: {script.filename}", exc_info=True)

    def postprocess(self, p, processed):
        self._each("postprocess", p, processed)
