class OptionInfo:
    def __init__(
        self,
        default=None,
        label="",
        component=None,
        component_args=None,
        onchange=None,
        section=None,
        refresh=None,
        comment_before="",
        comment_after="",
        infotext=None,
        restrict_api=False,
        category_id=None,
    ):
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section
        self.infotext = infotext


class RecordingDict(dict):
    """opts.data: every write is recorded (key, value), for tests."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes = []

    def __setitem__(self, key, value):
        self.writes.append((key, value))
        super().__setitem__(key, value)


class Options:
    def __init__(self, data):
        object.__setattr__(self, "data", RecordingDict(data))
        object.__setattr__(self, "data_labels", {})
        object.__setattr__(self, "saved", [])  # config.json writes, for tests

    def add_option(self, key, info):
        self.data_labels[key] = info
        if key not in self.data:
            dict.__setitem__(self.data, key, info.default)

    def set(self, key, value, is_api=False, run_callbacks=True):
        oldval = self.data.get(key, None)
        if oldval == value:
            return False
        self.data[key] = value
        return True

    def save(self, filename):
        self.saved.append(dict(self.data))

    def get_default(self, key):
        info = self.data_labels.get(key)
        return None if info is None else info.default

    def __getattr__(self, item):
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        raise AttributeError(item)

    def __setattr__(self, key, value):
        self.data[key] = value
