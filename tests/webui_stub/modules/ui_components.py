def InputAccordion(value, **kwargs):  # noqa: N802 - the host's name; Forge 2 makes it a function
    import gradio as gr

    checkbox = gr.Checkbox(value, visible=False, elem_id=f"{kwargs.get('elem_id', 'acc')}-checkbox")

    class _Accordion:
        def __enter__(self):
            self.acc = gr.Accordion(
                label=kwargs.get("label", "Accordion"), open=value, elem_id=kwargs.get("elem_id")
            )
            self.acc.__enter__()
            return checkbox

        def __exit__(self, *exc):
            return self.acc.__exit__(*exc)

    return _Accordion()
