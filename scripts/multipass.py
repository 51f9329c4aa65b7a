"""Multipass for the Stable Diffusion WebUI (AUTOMATIC1111 1.6+, reForge, Forge 2, Forge Neo).

A thin adapter: the accordion, the hooks and the callbacks. Everything else is in
`lib_multipass` (imported as a package, never through `scripts.`, which another extension
could shadow).
"""

from modules import script_callbacks, scripts, shared

from lib_multipass.webui import api, compat, job, settings, ui, xyz


class MultipassScript(scripts.Script):
    """Runs passes after the generation: checkpoint switches, denoise chains, detail crops."""

    sorting_priority = 20  # after most scripts, so the passes see their results

    def __init__(self):
        self.base_steps = None  # the tab's own steps slider, for the step hints

    def title(self):
        return xyz.TITLE  # stable: its lower case is the API key "multipass"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def after_component(self, component, **kwargs):
        if kwargs.get("elem_id") in ("txt2img_steps", "img2img_steps"):
            self.base_steps = component

    def ui(self, is_img2img):
        import gradio as gr
        from modules.ui_components import InputAccordion

        tab = "img2img" if is_img2img else "txt2img"
        choices = ui.Choices(
            checkpoints=compat.checkpoint_titles(),
            vaes=compat.vae_names(),
            samplers=compat.sampler_names(),
            schedulers=compat.scheduler_labels(),
            upscalers=compat.upscaler_names(),
            text_encoders=compat.text_encoder_names(),
            detectors=compat.detector_names(),
            controlnet_models=compat.controlnet_model_names(),
            controlnet_modules=compat.controlnet_module_names(),
        )
        enabled, state, paste, _ = ui.build(
            gr,
            InputAccordion,
            tab,
            settings.passes_shown(),
            choices,
            padding_unit=settings.padding_unit(),
            base_steps=self.base_steps,
            step_mode=job.step_mode,
            refresh_checkpoints=compat.refresh_checkpoint_titles,
            no_progress=compat.no_progress(gr),
            checkpoint_entry=compat.checkpoint_entry,
            preview=lambda values, image: job.preview_detections(values, image, tab),
        )
        self.infotext_fields = paste
        self.paste_field_names = []
        return [enabled, state]

    def process(self, p, enabled, recipe, *args):
        job.process(p, enabled, recipe)

    def process_batch(self, p, enabled, recipe, *args, batch_number=0, **kwargs):
        job.process_batch(p, batch_number)

    def postprocess(self, p, processed, enabled, recipe, *args):
        job.postprocess(p, processed)


def on_app_started(demo, app):
    api.mount(app, job.validate_request, compat.detector_names)


def on_before_ui():
    xyz.register(settings.passes_shown())


def on_ui_settings():
    import gradio as gr

    settings.register(shared, gr)


compat.check_host()
script_callbacks.on_ui_settings(on_ui_settings)
script_callbacks.on_app_started(on_app_started)
script_callbacks.on_before_ui(on_before_ui)
