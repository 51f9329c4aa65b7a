def InputAccordion(value, **kwargs):
    """An accordion whose open state is a checkbox's value (A1111's is a gr.Checkbox subclass,
    Forge 2's a function; both are used as `with InputAccordion(...) as enabled:`). The host's
    javascript/inputAccordion.js keeps the two in step in the browser."""
    import gradio as gr

    accordion_id = kwargs.get("elem_id") or "input-accordion-0"
    checkbox = gr.Checkbox(value, label=kwargs.get("label", "Accordion"), visible=False,
                           elem_id=f"{accordion_id}-checkbox")

    class _Context:
        def __enter__(self):
            self.accordion = gr.Accordion(label=kwargs.get("label", "Accordion"), open=value,
                                          elem_id=accordion_id, elem_classes=["input-accordion"])
            self.accordion.__enter__()
            return checkbox

        def __exit__(self, *exc):
            return self.accordion.__exit__(*exc)

    return _Context()
